"""`accelsim op`: cost one operation on one chip, or replay a SCALE-Sim run analytically."""
from __future__ import annotations

import click

from accelsim.cli import options
from accelsim.config.types import MAX_COUNT
from accelsim.dtypes import DTYPES
from accelsim.errors import AccelsimError, DoesNotFitError


@click.group(invoke_without_command=True)
@click.option("--hw", default=None, help="Hardware: a bundled name (see `accelsim hw`) or a YAML path.")
@click.option("--scalesim-cfg", type=click.Path(dir_okay=False), default=None,
              help="A SCALE-Sim .cfg (reads ArrayHeight, ArrayWidth, Dataflow).")
@click.option("--topology", type=click.Path(dir_okay=False), default=None,
              help="A SCALE-Sim topology CSV: GEMM ('Layer, M, N, K,' in v2, 'Layer Name, M, N, "
                   "K,' in v3) or convolution ('Layer name, IFMAP Height, ..., Strides,').")
@options.json_option
@click.pass_context
def op(ctx, hw, scalesim_cfg, topology, as_json):
    """Cost one op on one chip, or reproduce SCALE-Sim's compute report.

    \b
    One op:
      accelsim op --hw tpu-v5e matmul --m 2048 --k 4096 --n 4096 --dtype bf16 --dataflow ws
    SCALE-Sim inputs (stall-free compute cycles, as its COMPUTE_REPORT counts them):
      accelsim op --scalesim-cfg scale.cfg --topology gemms.csv [--json]
    """
    ctx.obj = {"hw": hw, "as_json": as_json}
    if scalesim_cfg or topology:
        if ctx.invoked_subcommand is not None or hw is not None:
            raise click.UsageError("--scalesim-cfg/--topology replay SCALE-Sim; do not combine them "
                                   "with --hw or an op")
        if not (scalesim_cfg and topology):
            raise click.UsageError("give both --scalesim-cfg and --topology")
        _scalesim(scalesim_cfg, topology, as_json)
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _scalesim(cfg: str, topology: str, as_json: bool) -> None:
    from accelsim.importers.scalesim import compute_report
    array, rows = compute_report(cfg, topology)
    if as_json:
        options.echo_json({"array": {"rows": array.rows, "cols": array.cols, "dataflow": array.dataflow},
                           "layers": [r.to_dict() for r in rows]})
        return
    import pandas as pd
    frame = pd.DataFrame([r.to_dict() for r in rows]).rename(columns={
        "total_cycles": "total cycles", "stall_cycles": "stall cycles",
        "overall_util_pct": "overall util %", "mapping_efficiency_pct": "mapping eff %",
        "compute_util_pct": "compute util %"})
    click.echo(f"{array.rows}x{array.cols} array, dataflow {array.dataflow} (stall-free, SCALE-Sim "
               f"compute-report conventions)")
    click.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


@op.command()
@click.option("--m", "m", type=options.count(1, MAX_COUNT), required=True, help="Rows of A and C.")
@click.option("--k", "k", type=options.count(1, MAX_COUNT), required=True, help="Reduction dimension.")
@click.option("--n", "n", type=options.count(1, MAX_COUNT), required=True, help="Columns of B and C.")
@click.option("--count", type=options.count(1, MAX_COUNT), default=1, show_default=True,
              help="Independent GEMMs of this shape (batched).")
@click.option("--dtype", type=click.Choice(DTYPES), default="bf16", show_default=True,
              help="Operand format (ternary: ternary B with int8 A, add-only).")
@click.option("--dataflow", type=click.Choice(["os", "ws", "is"]), default=None,
              help="Systolic chips: force a dataflow (default: the mapper picks the fastest).")
@click.option("--json", "sub_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def matmul(ctx, m, k, n, count, dtype, dataflow, sub_json):
    """One GEMM: A (m x k) times B (k x n).

    Every operand starts in off-chip memory and the result ends there (the rule validation's
    GEMM points use too)."""
    from accelsim.api import resolve_hardware
    from accelsim.report.opcost import matmul_report
    if ctx.obj["hw"] is None:
        raise AccelsimError("give --hw before the op, e.g. `accelsim op --hw tpu-v5e matmul ...`")
    chip = resolve_hardware(ctx.obj["hw"])
    try:
        report = matmul_report(chip, m=m, k=k, n=n, count=count, dtype=dtype, dataflow=dataflow)
    except DoesNotFitError as err:
        if err.shortfall is None:
            raise
        # The model-level advice (--tp, --batch) names options `op` does not have: say it in its own.
        raise DoesNotFitError(f"matmul does not fit on {chip.name}: {err.shortfall}; use a smaller "
                              f"--m/--k/--n/--count or a narrower --dtype", shortfall=err.shortfall) from None
    if ctx.obj["as_json"] or sub_json:
        options.echo_json(report.to_dict())
    else:
        click.echo(report.text())


COMMANDS = (op,)
