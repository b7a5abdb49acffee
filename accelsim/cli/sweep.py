"""`accelsim sweep`: explore a design space (grid, random, NSGA-II), stream results to CSV,
find the Pareto front and the design a target asks for, and write a report."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from accelsim.api import resolve_model
from accelsim.cli import options
from accelsim.dse import runner, search
from accelsim.dse.evaluate import Job
from accelsim.dse.space import MAX_GRID_POINTS, METRICS, Condition, load_space
from accelsim.errors import AccelsimError
from accelsim.report.sweep import SweepSummary, cliffs_from, load_frame, write_report
from accelsim.workload import Workload


def _progress(total: int):
    from tqdm import tqdm
    bar = tqdm(total=total, unit="pt", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
    return bar


@click.command()
@options.model_option
@click.option("--space", "space_path", required=True,
              help="Design-space YAML (hw_configs/spaces/*.yaml) or a bundled space name.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/dse"),
              show_default=True, help="Folder for results.csv, the report and plots.")
@click.option("--search", "strategy", type=click.Choice(search.SEARCHES), default="grid", show_default=True,
              help="grid: every combination; random: --samples draws; nsga2: evolve ~--samples designs.")
@click.option("--samples", type=click.IntRange(min=1, max=MAX_GRID_POINTS), default=512, show_default=True,
              help="Evaluations for random and nsga2.")
@click.option("--seed", type=options.SEED, default=0, show_default=True, help="Seed for random and nsga2.")
@click.option("--workers", type=options.count(1, 256), default=1, show_default=True,
              help="Local processes evaluating chunks of points.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run on a Dask cluster instead of local processes.")
@click.option("--resume", is_flag=True, help="Skip points already in OUT/results.csv.")
@click.option("--target", "targets", multiple=True, metavar="METRIC>=N",
              help="A goal the chosen design must reach, e.g. 'tokens_per_s_per_user>=1000'.")
@click.option("--constraint", "constraints", multiple=True, metavar="METRIC<=N",
              help="An extra constraint on top of the space's, e.g. 'power_w<=200'.")
@click.option("--pick", "pick_metric", type=click.Choice(list(METRICS)), default="area_mm2",
              show_default=True, help="Among designs meeting every target and constraint, choose the "
                                      "one that minimises this (maximises for throughput metrics).")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default=None,
              help="Override the space's workload phase.")
@click.option("--batch", type=options.count(1, options.MAX_BATCH), default=None, help="Override the space's batch.")
@click.option("--context", type=options.count(0, options.MAX_TOKENS), default=None, help="Override the space's context.")
@click.option("--no-report", is_flag=True, help="Write results.csv only (`accelsim report OUT` later).")
@options.json_option
def sweep(model, space_path, out, strategy, samples, seed, workers, scheduler, resume, targets,
          constraints, pick_metric, phase, batch, context, no_report, as_json):
    """Explore a hardware design space for one model and workload.

    \b
    Results stream to OUT/results.csv as they complete (kill it and --resume loses only the
    points in flight).  Points are costed by the vectorised fast path, identical to running
    `accelsim run` on each.  Example, the smallest hardwired die that reaches 1,000 tokens/s
    per user under 200 W:
      accelsim sweep --space hw_configs/spaces/hardwired.yaml \\
        --target 'tokens_per_s_per_user>=1000' --constraint 'power_w<=200' --pick area_mm2
    """
    space = load_space(space_path)
    spec = resolve_model(model)
    w = space.spec.workload
    workload = Workload(phase=phase or w.phase, batch=batch or w.batch, prompt=w.prompt,
                        context=w.context if context is None else context)
    conditions = space.constraints + [Condition.parse(t, "--target") for t in targets] + \
        [Condition.parse(c, "--constraint") for c in constraints]
    job = Job(space, spec, workload)
    # Held until the command ends (click closes the context): one sweep per folder at a time.
    click.get_current_context().with_resource(runner.locked_folder(out))
    csv_path = out / "results.csv"
    if csv_path.exists() and not resume and csv_path.stat().st_size > 0:
        click.echo(f"note: overwriting {csv_path} (use --resume to continue it)", err=True)

    def evaluate(points):
        bar = _progress(len(points))
        try:
            return runner.run(job, points, csv_path, workers=workers, scheduler=scheduler,
                              resume=True if strategy == "nsga2" else resume, progress=bar.update)
        finally:
            bar.close()

    if strategy == "nsga2":
        if not resume:
            csv_path.write_text("", encoding="utf-8")
        rows = search.nsga2(space, evaluate, space.spec.objectives, conditions, samples, seed)
    else:
        points = search.grid_points(space) if strategy == "grid" else search.random_points(space, samples, seed)
        rows = evaluate(points)
    if not rows:
        raise AccelsimError("the sweep evaluated no design points")
    pick_sense = "max" if pick_metric.startswith("tokens_per_s") else "min"
    summary = SweepSummary(
        title=f"Design-space sweep: {space.spec.name}", model=spec.name, space=space.source,
        workload=workload.describe(), search=strategy, keys=space.keys,
        objectives=dict(space.spec.objectives), constraints=[str(c) for c in conditions],
        pick_metric=pick_metric, pick_sense=pick_sense, cliffs=cliffs_from(space))
    summary.save(out / "sweep.json")
    files = {"html": out / "report.html"} if no_report else write_report(load_frame(csv_path), summary, out)
    feasible = search.feasible(rows, conditions)
    choice = search.pick(search.front(feasible, space.spec.objectives) or feasible, pick_metric, pick_sense)
    if as_json:
        options.echo_json({"points": len(rows), "feasible": len(feasible),
                           "front": len(search.front(feasible, space.spec.objectives)),
                           "chosen": choice.row, "report": str(files["html"])})
        return
    invalid = [r for r in rows if r["status"] == "invalid"]
    if invalid:
        click.echo(f"warning: {len(invalid)} point(s) are not valid configs, e.g. {invalid[0]['reason']}",
                   err=True)
    click.echo(f"{len(rows)} designs, {len(feasible)} feasible under {', '.join(map(str, conditions)) or 'no constraints'}")
    if choice.row is None:
        click.echo("no design meets every target and constraint")
    else:
        params = ", ".join(f"{k}={choice.row[k]:.4g}" if isinstance(choice.row[k], float) else f"{k}={choice.row[k]}"
                           for k in space.keys)
        click.echo(f"chosen ({pick_sense} {pick_metric}): {params}")
        click.echo("  " + ", ".join(f"{m} {choice.row[m]:.4g}" for m in METRICS))
    click.echo(f"report: {files['html']} (results.csv, pareto.csv and plots in {out})")


COMMANDS = (sweep,)
