"""`accelsim run`: one model on one chip for one workload step, or a list of them."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim import api
from accelsim.cli import options
from accelsim.cli.progress import progress
from accelsim.report.speculative import speculative_summary
from accelsim.report.text import points_table, result_summary
from accelsim.sim.result import Refusal


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
@click.option("--top", type=click.IntRange(min=0, max=100_000), default=12, show_default=True,
              help="Rows of the per-op tables (slowest first); 0 for all.")
@click.option("--perfetto", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.json",
              help="Also write the step replayed in simulated time as a Chrome/Perfetto trace "
                   "(open it at ui.perfetto.dev); one workload point only.")
@options.power_limit_option
@options.spec_decode_options
@options.json_option
@options.csv_option
def run(model, hw, phase, batch, prompt, context, allow_long_context, density, weight_dtype,
        act_dtype, kv_dtype, parallelism, runtime, top, perfetto, power_limit, spec_decode, as_json,
        as_csv):
    """Simulate one step: latency, tokens/s, joules/token and the per-op breakdown.

    \b
    Each op is labelled compute- or memory-bound by whichever of its arithmetic and its
    bytes at each memory level takes longer under the mapping the mapper chose for its shape.
    Lists (--batch 1,8,32 --context 1k,8k,32k) run every point and print one row each.
    With --spec-decode, a decode step is also costed as speculative decoding (the verify
    step of K+1 tokens and the draft's steps) and the effective TPOT and tokens/s per user
    are shown (in --json under "speculative").
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    spec = api.resolve_model(model)
    chip = api.hardware_under(hw, runtime, power_limit)
    points = options.workload_points(phase, batch, prompt, context, density, spec.max_context)
    if perfetto is not None and len(points) > 1:
        raise click.UsageError("--perfetto traces one step: give one --batch and one --prompt/--context")
    dtypes = {"weight_dtype": weight_dtype, "act_dtype": act_dtype, "kv_dtype": kv_dtype}
    for point in points:  # refuse a too-long context before spending time on any point
        api.long_context_note(spec, point, allow_long_context)
    if spec_decode is not None:
        if len(points) > 1 or as_csv:
            raise click.UsageError("--spec-decode costs one decode step: give one --batch and one "
                                   "--context, without --csv")
        speculation = api.speculative(spec, chip, points[0], spec_decode, parallelism=parallelism, **dtypes)
        if as_json:
            options.echo_json(speculation.to_dict())
        else:
            click.echo(result_summary(speculation.baseline, top=top))
            click.echo(speculative_summary(speculation.figures))
        return
    if len(points) == 1:
        results = [api.simulate(spec, chip, points[0], parallelism=parallelism,
                                allow_long_context=allow_long_context, **dtypes)]
        refusals: list[Refusal] = []
    else:  # a point that does not fit is a cliff to show, not the end of the run
        results, refusals = api.sweep_points(spec, chip, progress(points, "points", quiet=as_json or as_csv),
                                             parallelism=parallelism,
                                             allow_long_context=allow_long_context, **dtypes)
    if perfetto is not None:
        from accelsim.report.trace import timeline_trace  # matplotlib: only when asked for
        timeline_trace(api.timeline(spec, chip, points[0], parallelism=parallelism, **dtypes), perfetto,
                       title=f"{spec.name} on {chip.name}, {points[0].describe()}")
    if as_json:
        options.echo_json(results[0].to_dict() if len(points) == 1 else
                          [r.to_dict() for r in results] + [f.to_dict() for f in refusals])
    elif as_csv:
        options.echo_csv(results, refusals)
    elif len(points) == 1:
        click.echo(result_summary(results[0], top=top))
    else:
        click.echo(points_table(results, refusals))
    if perfetto is not None and not (as_json or as_csv):
        click.echo(f"\ntrace: {perfetto} (open at https://ui.perfetto.dev)")


COMMANDS = (run,)
