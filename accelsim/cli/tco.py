"""`accelsim tco`: what serving a model costs on each chip, and when a custom chip pays off."""
from __future__ import annotations

import math
from pathlib import Path

import click

from accelsim import api
from accelsim.cli import options
from accelsim.report.economics import summary_text, write_report


def _positive_finite(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a finite number > 0, got {value!r}")
    return value


@click.command()
@options.model_option
@click.option("--hw", "hws", multiple=True, default=("hardwired-llama-3.1-8b", "h100-sxm", "b200"),
              show_default=True, help="Hardware to cost (repeat the option): merchant chips are priced "
                                      "by what a buyer pays, others as custom silicon with NRE.")
@options.workload_options
@options.dtype_options
@options.parallel_options
@click.option("--deploy-years", type=float, default=None, callback=_positive_finite,
              help="Years over which hardware is paid off [default: 3, accelsim/economics/data/system.yaml].")
@click.option("--model-life", "model_life", type=float, default=None, callback=_positive_finite,
              help="Months a model stays in service before it is replaced (a respin on a chip that "
                   "holds its weights in silicon) [default: 12].")
@click.option("--tokens-per-day", type=float, default=None, callback=_positive_finite,
              help="Load to serve: whole systems of each chip are bought to carry it "
                   "[default: 1e10, accelsim/economics/data/system.yaml].")
@click.option("--utilisation", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
              help="Instead of --tokens-per-day: the load is what one system of the first --hw serves "
                   "busy this fraction of the time.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write tco.json, tco.txt and the plots (cost vs tokens, breakeven vs model life) here.")
@options.json_option
def tco(model, hws, phase, batch, prompt, context, allow_long_context, weight_dtype, act_dtype, kv_dtype, parallelism,
        deploy_years, model_life, tokens_per_day, utilisation, out, as_json):
    """Total cost of ownership: capex, opex per year, NRE, $/Mtoken at the load, and the
    breakeven (tokens and months) of each custom chip against each merchant chip.

    \b
    Example:
      accelsim tco --model llama-3.1-8b --hw hardwired-llama-3.1-8b --hw h100-sxm \\
                   --tokens-per-day 1e10 --model-life 12
    Every figure and its source: docs/economics.md.
    """
    if tokens_per_day is not None and utilisation is not None:
        raise click.UsageError("give --tokens-per-day or --utilisation, not both")
    spec = api.resolve_model(model)
    workload = options.workload_from(phase, batch, prompt, context, max_context=spec.max_context)
    api.long_context_note(spec, workload, allow_long_context)
    report = api.tco(spec, list(hws), workload, deploy_years=deploy_years, model_life_months=model_life,
                     tokens_per_day=tokens_per_day, utilisation=utilisation, parallelism=parallelism,
                     weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype)
    files = write_report(report, out) if out is not None else {}
    if as_json:
        options.echo_json(report.to_dict())
        return
    click.echo(summary_text(report))
    if files:
        click.echo(f"\nwritten: {', '.join(str(p) for p in files.values())}")


COMMANDS = (tco,)
