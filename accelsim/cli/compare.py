"""`accelsim compare`: one model on several chips -> a table and a report under reports/."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim import api, hardware
from accelsim.api import resolve_hardware, resolve_model
from accelsim.cli import options, output
from accelsim.report.compare import _display as display_frame
from accelsim.report.compare import summary_frame, write_report

DEFAULT_HW = ("h100-sxm", "tpu-v5e", "hardwired-llama-3.1-8b")


def roof_of(chip) -> tuple[float, float]:
    """(peak matrix FLOP/s, bandwidth of the memory holding weights and KV) for the roofline plot."""
    outer = hardware.backend(chip).main_memory(chip)
    return max(chip.compute.matrix.values()), outer.bandwidth


@click.command()
@options.model_option
@click.option("--hw", "hws", multiple=True, default=DEFAULT_HW, show_default=True,
              help="Hardware to compare (repeat the option).")
@options.workload_options
@options.density_option
@options.dtype_options
@options.parallel_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: reports/<name>].")
@output.name_option("compare")
@output.force_option
@options.json_option
def compare(model, hws, phase, batch, prompt, context, density, weight_dtype, act_dtype, kv_dtype,
            parallelism, out, name, force, as_json):
    """Compare chips on one model and workload; write Markdown + HTML + CSV + plots.

    A chip that cannot run the model (it does not fit; another model's weights are in its
    silicon) is reported as such (a real cliff), not dropped.
    """
    workload = options.workload_from(phase, batch, prompt, context, density)
    spec = resolve_model(model)
    chips = [resolve_hardware(h) for h in hws]
    results, refusals = api.compare(spec, chips, workload, parallelism=parallelism,
                                    weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype)
    with output.report_folder(out or Path("reports") / name, force) as (staging, out_dir):
        files = output.moved(write_report(results, refusals, {c.name: roof_of(c) for c in chips}, staging,
                                          f"{spec.name}: {', '.join(c.name for c in chips)}",
                                          workload.describe()), staging, out_dir)
    if as_json:
        payload = [{**r.to_dict(), "hw": r.hw, "status": "ok"} for r in results]
        payload += [{"hw": f.hw, "status": "cannot run", "reason": f.reason} for f in refusals]
        options.echo_json(payload)
        return
    click.echo(f"{spec.name}, {workload.describe()}")
    table = display_frame(summary_frame(results, refusals))
    table["status"] = table["status"].map(lambda v: v if v == "ok" else "cannot run (below)")
    click.echo(table.to_string(index=False))
    for refusal in refusals:
        click.echo(f"  {refusal.hw}: {refusal.reason}")
    click.echo(f"\nreport: {files['html']} (and report.md, CSV and plots in {out_dir})")


COMMANDS = (compare,)
