"""`accelsim validate` and `accelsim calibrate`: predictions against published measurements."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim.cli import options
from accelsim.errors import AccelsimError
from accelsim.validate.points import SUBSETS


class BoundExceeded(click.ClickException):
    """The predictions are worse than the bound: a result, not bad input, hence exit 1."""

    exit_code = 1


@click.command()
@click.option("--subset", type=click.Choice(SUBSETS), default="all", show_default=True,
              help="smoke: a few cheap points; calibration / holdout: the two halves of the split "
                   "(docs/validation.md); preliminary: points their publisher calls preliminary "
                   "(never fitted or bounded); all: every point.")
@click.option("--max-error", type=options.Finite(0.0, 1e6, low_open=False), default=0.15, show_default=True,
              help="Bound on the median |error| per hardware and metric over the holdout points run "
                   "(over all points run when none is a holdout point); exit 1 when exceeded.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write points.csv, summary.csv, validation.json, validation.md and plots here.")
@click.option("--points", "points_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Points file (default: validation/points.yaml).")
@options.json_option
def validate(subset, max_error, out, points_path, as_json):
    """Predict every measured point in validation/ and report the errors.

    \b
    Prints predicted vs measured per point, then median / mean |error| per hardware and metric.
    Points accelsim cannot simulate (e.g. a model that does not fit) are listed with the reason, not run.
    """
    from accelsim.validate.run import markdown, to_json, write
    from accelsim.validate.run import validate as run_validation

    result = run_validation(subset, max_error, points_path)
    if out is not None:
        try:
            write(result, out)
        except OSError as err:
            raise AccelsimError(f"--out: cannot write to {out} ({err.strerror or err})") from None
    if as_json:
        options.echo_json(to_json(result))
    else:
        click.echo(markdown(result))
    if not result.passed:
        failed = result.gate[~result.gate["pass"]]
        names = ", ".join(f"{r.hw}/{r.metric} {100 * r.median_abs_error:.1f} %" for r in failed.itertuples())
        raise BoundExceeded(f"median |error| above {100 * max_error:.1f} %: {names}")


@click.command()
@click.option("--hw", "hws", multiple=True, help="Hardware config(s) to fit (default: every one with points).")
def calibrate(hws):
    """Fit efficiency.compute, efficiency.memory, the per-op, per-step and per-request overheads on the calibration subset.

    \b
    Prints the fitted values (as YAML to paste into hw_configs/<name>.yaml) and the loss before
    and after; `accelsim validate --subset holdout` then checks them on the other half.
    """
    from accelsim.validate.calibrate import calibrate as fit

    for f in fit(list(hws) or None):
        a = f.after
        click.echo(f"# {f.hw}: {f.points} calibration points, sum log-error^2 {f.loss_before:.4f} -> "
                   f"{f.loss_after:.4f}")
        click.echo(f"efficiency: {{compute: {a.compute:.3f}, memory: {a.memory:.3f}}}  "
                   f"overhead: {a.overhead_s * 1e6:.2f} us  step overhead: {a.step_s * 1e6:.1f} us  "
                   f"request overhead: {a.request_s * 1e3:.3f} ms")


COMMANDS = (validate, calibrate)
