"""`accelsim run`: one model on one chip for one workload step."""
from __future__ import annotations

import click

from accelsim.api import hardware_under, simulate, speculative
from accelsim.cli import options
from accelsim.report.speculative import speculative_summary
from accelsim.report.text import result_summary


@click.command()
@options.model_option
@click.option("--hw", default="h100-sxm", show_default=True,
              help="Hardware: a bundled name (see `accelsim hw`) or a YAML path.")
@options.workload_options
@options.density_option
@options.dtype_options
@options.parallel_options
@click.option("--runtime", default=None,
              help="Serving engine preset (runtimes/: vllm, sglang, tensorrt-llm, nim, accelsim) whose "
                   "kernels and host overheads the step runs with [default: the hardware config's].")
@click.option("--top", type=click.IntRange(min=0), default=12, show_default=True,
              help="Rows of the per-op table (slowest ops first); 0 for all.")
@options.spec_decode_options
@options.json_option
def run(model, hw, phase, batch, prompt, context, density, weight_dtype, act_dtype, kv_dtype,
        parallelism, runtime, top, spec_decode, as_json):
    """Simulate one step: latency, tokens/s, joules/token and the per-op breakdown.

    \b
    Each op is labelled compute- or memory-bound by whichever of its arithmetic and its
    bytes at each memory level takes longer under the mapping the mapper chose for its shape.
    With --spec-decode, a decode step is also costed as speculative decoding (the verify
    step of K+1 tokens and the draft's steps) and the effective TPOT and tokens/s per user
    are shown (in --json under "speculative").
    """
    workload = options.workload_from(phase, batch, prompt, context, density)
    chip = hardware_under(hw, runtime)
    dtypes = {"weight_dtype": weight_dtype, "act_dtype": act_dtype, "kv_dtype": kv_dtype}
    if spec_decode is not None:
        spec = speculative(model, chip, workload, spec_decode, parallelism=parallelism, **dtypes)
        if as_json:
            options.echo_json(spec.to_dict())
        else:
            click.echo(result_summary(spec.baseline, top=top))
            click.echo(speculative_summary(spec.figures))
        return
    result = simulate(model, chip, workload, parallelism=parallelism, **dtypes)
    if as_json:
        options.echo_json(result.to_dict())
    else:
        click.echo(result_summary(result, top=top))


COMMANDS = (run,)
