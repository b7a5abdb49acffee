"""`accelsim compare`: one model on several chips -> a table and a report under reports/."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim import api
from accelsim.api import resolve_model
from accelsim.cli import options, output
from accelsim.cli.progress import progress
from accelsim.sim.result import precision_note

DEFAULT_HW = ("h100-sxm", "tpu-v5e", "hardwired-llama-3.1-8b")


@click.command()
@options.model_option
@click.option("--hw", "hws", multiple=True, default=DEFAULT_HW, show_default=True,
              help="Hardware to compare (repeat the option).")
@options.workload_options
@options.density_option
@options.dtype_options
@options.parallel_options
@options.power_limit_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: reports/<name>].")
@output.name_option("compare")
@output.force_option
@options.json_option
@options.csv_option
def compare(model, hws, phase, batch, prompt, context, allow_long_context, density, weight_dtype,
            act_dtype, kv_dtype, parallelism, power_limit, out, name, force, as_json, as_csv):
    """Compare chips on one model and workload; write Markdown + HTML + CSV + plots.

    A chip that cannot run the model (it does not fit; another model's weights are in its
    silicon) is reported as such (a real cliff), not dropped.  List values (--batch 1,8,32,128,
    --context 1k,8k,32k, --prompt 512,2k,8k) run every point on every chip and add
    throughput-latency, latency-context and TTFT-prompt curves to the report.
    """
    from accelsim.report.compare import _display as display_frame  # pandas/matplotlib: lazily
    from accelsim.report.compare import summary_frame, write_report
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    spec = resolve_model(model)
    points = options.workload_points(phase, batch, prompt, context, density, spec.max_context)
    chips = [api.power_limited(h, power_limit) for h in hws]
    dtypes = {"weight_dtype": weight_dtype, "act_dtype": act_dtype, "kv_dtype": kv_dtype}
    for point in points:  # the model's own limit: refuse before costing anything
        api.long_context_note(spec, point, allow_long_context)
    results, refusals = [], []
    for point in progress(points, "points", quiet=as_json or as_csv or len(points) == 1):
        done, refused = api.compare(spec, chips, point, parallelism=parallelism,
                                    allow_long_context=allow_long_context, **dtypes)
        results += done
        refusals += refused
    sizes = ", ".join(p.describe() for p in points) if len(points) <= 4 else \
        f"{len(points)} points from {points[0].describe()} to {points[-1].describe()}"
    with output.report_folder(out or Path("reports") / name, force) as (staging, out_dir):
        files = output.moved(write_report(results, refusals, chips, staging,
                                          f"{spec.name}: {', '.join(c.name for c in chips)}", sizes),
                             staging, out_dir)
    if as_json:
        options.echo_json([{**r.to_dict(), "status": "ok"} for r in results] +
                          [f.to_dict() for f in refusals])
        return
    if as_csv:
        options.echo_csv(results, refusals)
        return
    click.echo(f"{spec.name}, {sizes}")
    precision = precision_note(results)
    if precision:
        click.echo(f"not like for like ({precision}): each row ran in its own formats")
    click.echo(display_frame(summary_frame(results, refusals)).to_string(index=False))
    for refusal in refusals:
        click.echo(f"  {refusal.hw}: {refusal.reason}")
    click.echo(f"\nreport: {files['html']} (and report.md, CSV and plots in {out_dir})")


COMMANDS = (compare,)
