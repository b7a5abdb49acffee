"""`accelsim sweep`: explore a design space (grid, random, NSGA-II), stream results to CSV,
find the Pareto front and the design a target asks for, and write a report."""
from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from accelsim import api
from accelsim.api import resolve_model, simulate
from accelsim.cli import options, output
from accelsim.cli.progress import DELAY_S, on_terminal
from accelsim.dse import reading, runner, search
from accelsim.dse.evaluate import Job
from accelsim.dse.metrics import Reference
from accelsim.dse.space import MAX_GRID_POINTS, METRICS, Condition, load_space
from accelsim.errors import AccelsimError, CannotRunError
from accelsim.report.cells import format_cell
from accelsim.report.sweep import SweepSummary, cliffs_from, load_frame, report_columns, rows_at, write_report
from accelsim.workload import Workload


def _progress(total: int, quiet: bool):
    """The points bar: on a terminal, after the first second, never under --json."""
    from tqdm import tqdm
    bar = tqdm(total=total, unit="pt", file=sys.stderr, disable=quiet or not on_terminal(),
               delay=DELAY_S, leave=False)
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
@click.option("--breakeven-vs", "breakeven_vs", default="h100-sxm", show_default=True,
              help="Merchant chip the breakeven_mtokens metric weighs each design against (its system "
                   "$/Mtoken on the same model and workload; docs/economics.md).")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default=None,
              help="Override the space's workload phase.")
@click.option("--batch", type=options.count(1, options.MAX_BATCH), default=None, help="Override the space's batch.")
@click.option("--context", type=options.count(0, options.MAX_TOKENS), default=None, help="Override the space's context.")
@click.option("--no-report", is_flag=True, help="Write results.csv only (`accelsim report OUT` later).")
@options.dtype_options
@options.json_option
def sweep(model, space_path, out, strategy, samples, seed, workers, scheduler, resume, targets,
          constraints, pick_metric, breakeven_vs, phase, batch, context, no_report, weight_dtype, act_dtype,
          kv_dtype, as_json):
    """Explore a hardware design space for one model and workload.

    \b
    Results stream to OUT/results.csv as they complete (kill it and --resume loses only the
    points in flight), with OUT/results.parquet written beside it at the end.  Points are costed by the vectorised fast path, identical to running
    `accelsim run` on each.  Example, the smallest hardwired die that reaches 1,000 tokens/s
    per user under 200 W:
      accelsim sweep --space hw_configs/spaces/hardwired.yaml \\
        --target 'tokens_per_s_per_user>=1000' --constraint 'power_w<=200' --pick area_mm2
    """
    space = load_space(space_path)
    spec = resolve_model(model).with_dtypes(weight=weight_dtype, activation=act_dtype, kv=kv_dtype)
    w = space.spec.workload
    workload = Workload(phase=phase or w.phase, batch=batch or w.batch, prompt=w.prompt,
                        context=w.context if context is None else context)
    conditions = space.constraints + [Condition.parse(t, "--target") for t in targets] + \
        [Condition.parse(c, "--constraint") for c in constraints]
    clash = contradiction(conditions)
    if clash is not None:
        raise AccelsimError(clash)
    if context is not None and workload.phase == "prefill":
        raise click.UsageError("--context is ignored by a prefill sweep (it reads the space's prompt); "
                               "drop --context or use --phase decode")
    api.long_context_note(spec, workload, allow=False)  # the model's limit, before any design point
    reference, reference_note = _reference(spec, breakeven_vs, workload)
    job = Job(space, spec, workload, reference=reference)
    # Held until the command ends (click closes the context): one sweep per folder at a time.
    click.get_current_context().with_resource(runner.locked_folder(out))
    csv_path = out / "results.csv"
    if csv_path.exists() and not resume and csv_path.stat().st_size > 0:
        click.echo(f"note: overwriting {csv_path} (use --resume to continue it)", err=True)

    def evaluate(points):
        bar = _progress(len(points), as_json)
        try:
            return runner.run(job, points, csv_path, workers=workers, scheduler=scheduler,
                              resume=True if strategy == "nsga2" else resume, progress=bar.update)
        finally:
            bar.close()

    if strategy == "nsga2":
        if not resume:
            csv_path.write_text("", encoding="utf-8")
        search.nsga2(space, evaluate, space.spec.objectives, conditions, samples, seed)
    else:
        # Grid and random points are generated lazily and streamed: memory stays flat.
        if strategy == "grid":
            points, total = search.iter_grid_points(space), search.grid_size(space)
        else:
            points, total = search.iter_random_points(space, samples, seed), samples
        bar = _progress(total, as_json)
        try:
            runner.stream(job, points, csv_path, workers=workers, scheduler=scheduler, resume=resume,
                          distinct=strategy == "grid", total=total, progress=bar.update)
        finally:
            bar.close()
    pick_sense = "max" if pick_metric.startswith("tokens_per_s") else "min"
    summary = SweepSummary(
        title=f"Design-space sweep: {space.spec.name}", model=spec.name, space=space.source,
        workload=workload.describe(), search=strategy, keys=space.keys,
        objectives=dict(space.spec.objectives), constraints=[str(c) for c in conditions],
        pick_metric=pick_metric, pick_sense=pick_sense, cliffs=cliffs_from(space))
    # Only the columns every design is judged on are read whole; full rows (the front, the
    # chosen design) are fetched in batches, so memory stays near flat in the sweep's size.
    parquet = runner.to_parquet(csv_path)
    frame = load_frame(parquet, report_columns(summary))
    if not len(frame):
        raise AccelsimError("the sweep evaluated no design points")
    if reference_note is not None:  # said once the sweep ran, so a refusal stays one line
        click.echo(f"note: no breakeven_mtokens: {reference_note}", err=True)
    summary.save(out / "sweep.json")

    def rows(positions: np.ndarray):
        return rows_at(parquet, positions)

    # The front is found once and shared by this summary and the report.
    found = reading.read(frame, space.spec.objectives, conditions)
    files: dict[str, Path] = {}
    if not no_report:
        with output.files_into(out) as staging:
            files = output.moved(write_report(frame, summary, staging, found, rows), staging, out)
    chosen = reading.pick(found, pick_metric, pick_sense)
    choice = None if chosen is None else reading.row(rows(np.array([chosen])).reset_index(drop=True), 0)
    if as_json:
        options.echo_json({"points": len(frame), "feasible": int(found.feasible.sum()),
                           "front": int(found.front.sum()), "chosen": choice,
                           "report": str(files["html"]) if "html" in files else None})
        return
    invalid = np.flatnonzero(frame["status"].eq("invalid").to_numpy(dtype=bool))
    if len(invalid):
        click.echo(f"warning: {len(invalid)} point(s) are not valid configs, e.g. "
                   f"{rows(invalid[:1])['reason'].iloc[0]}", err=True)
    click.echo(f"{len(frame)} designs, {int(found.feasible.sum())} feasible under "
               f"{', '.join(map(str, conditions)) or 'no constraints'}")
    if choice is None:
        click.echo("no design meets every target and constraint")
    else:
        params = ", ".join(f"{k}={format_cell(k, choice[k])}" for k in space.keys)
        click.echo(f"chosen ({pick_sense} {pick_metric}): {params}")
        click.echo("  " + ", ".join(f"{m} {format_cell(m, choice[m]) if choice[m] is not None else 'never'}"
                                    for m in METRICS))
    if no_report:
        click.echo(f"results: {csv_path} (no report written: `accelsim report {out}` draws it)")
    else:
        click.echo(f"report: {files['html']} (results.csv, results.parquet, pareto.csv and plots in {out})")


def contradiction(conditions: list[Condition]) -> str | None:
    """Why no design can meet ``conditions`` together (the space's constraints, --target and
    --constraint), when a metric's lower bound lies above its upper bound; None otherwise."""
    for metric in dict.fromkeys(c.metric for c in conditions):
        lows = [c for c in conditions if c.metric == metric and c.op == ">="]
        highs = [c for c in conditions if c.metric == metric and c.op == "<="]
        if lows and highs:
            low, high = max(lows, key=lambda c: c.value), min(highs, key=lambda c: c.value)
            if low.value > high.value:
                return (f"constraints {low} and {high} contradict: no design can meet both "
                        f"(from the space's constraints, --target and --constraint); relax one")
    return None


def _reference(spec, name: str, workload: Workload) -> tuple[Reference | None, str | None]:
    """The merchant chip's system $/Mtoken on this model and workload; None and why where it has
    none (it cannot run them; it is no merchant chip, so has no price), so breakeven_mtokens stays
    empty."""
    try:
        result = simulate(spec, name, workload)
    except CannotRunError as err:
        return None, err.one_line()
    if result.usd_per_mtoken is None:
        return None, f"--breakeven-vs {name} has no $/Mtoken here (only a merchant chip's price is known)"
    return Reference(result.hw, result.usd_per_mtoken), None


COMMANDS = (sweep,)
