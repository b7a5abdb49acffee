"""`accelsim run`: one model on one chip for one workload step."""
from __future__ import annotations

import click

from accelsim.api import simulate
from accelsim.cli import options
from accelsim.report.text import result_summary


@click.command()
@options.model_option
@click.option("--hw", default="h100-sxm", show_default=True,
              help="Hardware: a bundled name (see `accelsim hw`) or a YAML path.")
@options.workload_options
@options.density_option
@options.dtype_options
@options.parallel_options
@click.option("--top", type=click.IntRange(min=0, max=100_000), default=12, show_default=True,
              help="Rows of the per-op table (slowest ops first); 0 for all.")
@options.json_option
def run(model, hw, phase, batch, prompt, context, density, weight_dtype, act_dtype, kv_dtype,
        parallelism, top, as_json):
    """Simulate one step: latency, tokens/s, joules/token and the per-op breakdown.

    \b
    Each op is labelled compute- or memory-bound by whichever of its arithmetic and its
    bytes at each memory level takes longer under the mapping the mapper chose for its shape.
    """
    workload = options.workload_from(phase, batch, prompt, context, density)
    result = simulate(model, hw, workload, weight_dtype=weight_dtype, act_dtype=act_dtype,
                      kv_dtype=kv_dtype,
                      parallelism=parallelism)
    if as_json:
        options.echo_json(result.to_dict())
    else:
        click.echo(result_summary(result, top=top))


COMMANDS = (run,)
