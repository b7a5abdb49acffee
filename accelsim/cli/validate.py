"""`accelsim validate` and `accelsim calibrate`: predictions against published measurements."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim.cli import options, output
from accelsim.cli.progress import bar
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
              help="Points file (default: validation/points.yaml; with --serving, validation/serving.yaml; with --disagg, the measurements table validation/measured_2025.csv).")
@click.option("--serving", is_flag=True, default=False,
              help="Replay the serving measurements of validation/serving.yaml through `serve` under their "
                   "runtime presets instead (slow: minutes), and report median |error| per source and metric.")
@click.option("--disagg", is_flag=True, default=False,
              help="Replay InferenceX's disaggregated prefill/decode rows of validation/measured_2025.csv "
                   "through `serve --disagg` instead (slow: minutes), and report median |error| on TPOT "
                   "and throughput per GPU (every row held out: nothing is fitted on them).")
@click.option("--source", "source", default=None,
              help="With --serving: replay only this source of validation/serving.yaml (e.g. inferencex, "
                   "trtllm-1.0-throughput).")
@click.option("--trust-table", "trust_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-point table trust labels are computed from (hw, metric, split, "
                   "error, status); `--subset all --trust-table validation/trust_table.csv` refreshes "
                   "the bundled one.")
@options.json_option
def validate(subset, max_error, out, points_path, serving, disagg, source, trust_path, as_json):
    """Predict every measured point in validation/ and report the errors.

    \b
    Prints predicted vs measured per point, then median / mean |error| per hardware and metric.
    Points accelsim cannot simulate (e.g. a model that does not fit) are listed with the reason, not run.
    """
    if serving and disagg:
        raise AccelsimError("--serving and --disagg replay different tables; give one")
    if (serving or disagg) and trust_path is not None:
        raise AccelsimError("--trust-table is computed from the step points; it does not apply with "
                            f"--{'serving' if serving else 'disagg'}")
    if disagg and (out is not None or subset != "all"):
        raise AccelsimError("--disagg replays every disaggregated setup (all held out) and prints its table; "
                            "--subset and --out do not apply (use --json for the records)")
    if source is not None and not serving:
        raise AccelsimError("--source picks a source of validation/serving.yaml; it needs --serving")
    if serving:
        _validate_serving(subset, max_error, out, points_path, as_json, source)
        return
    if disagg:
        _validate_disagg(max_error, points_path, as_json)
        return
    from accelsim.validate.run import markdown, to_json, trust_frame, write
    from accelsim.validate.run import validate as run_validation

    with bar(None, "points", quiet=as_json) as done:
        result = run_validation(subset, max_error, points_path, done=done)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            with output.files_into(out) as staging:  # each table and plot lands whole
                write(result, staging)
        except OSError as err:
            raise AccelsimError(f"--out: cannot write to {out} ({err.strerror or err})") from None
    if trust_path is not None:
        try:
            from accelsim.validate.points import DEFAULT_POINTS, Catalogue
            families = Catalogue(points_path or DEFAULT_POINTS).spec.families
            trust_frame(result, families).to_csv(trust_path, index=False, float_format="%.6g")
        except OSError as err:
            raise click.UsageError(f"--trust-table {trust_path}: cannot write ({err.strerror})") from None
    if as_json:
        options.echo_json(to_json(result))
    else:
        click.echo(markdown(result))
    if not result.passed:
        failed = result.gate[~result.gate["pass"]]
        names = ", ".join(f"{r.hw}/{r.metric} {100 * r.median_abs_error:.1f} %" for r in failed.itertuples())
        raise BoundExceeded(f"median |error| above {100 * max_error:.1f} %: {names}")


def _validate_disagg(max_error: float, table: Path | None, as_json: bool) -> None:
    """--disagg: the setups replayed, then the median |error| per metric, held to --max-error on
    TPOT (interactivity_p50, compared as time) and output throughput per GPU (TTFT is shown, not
    bounded)."""
    from accelsim.validate import disagg

    records = disagg.replay_file(table)
    medians = disagg.summary(records)
    if as_json:
        options.echo_json({"setups": records, "median_abs_error": medians})
    else:
        click.echo(disagg.markdown(records))
        click.echo("\nmedian |error|: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in medians.items()))
    over = [f"{k} {100 * medians[k]:.1f} %" for k in ("interactivity_p50", "output_throughput_per_chip")
            if medians.get(k, 0.0) > max_error]
    if over:
        raise BoundExceeded(f"median |error| above {100 * max_error:.1f} %: {', '.join(over)}")


def _validate_serving(subset: str, max_error: float, out: Path | None, points_path: Path | None,
                      as_json: bool, source: str | None = None) -> None:
    from accelsim.validate import serving

    selection = serving.read_sources(points_path or serving.DEFAULT_FILE)
    points, lacking = selection.points, selection.unpredictable
    if source is not None:
        if source not in selection.sources:
            raise click.UsageError(f"--source {source!r} is not a source of the serving file; allowed: "
                                   f"{', '.join(sorted(selection.sources))}")
        points = [p for p in points if p.source == source]
        lacking = [u for u in lacking if u.source == source]
    points = [p for p in points if subset in ("all", p.split)]
    if not points:
        # A source whose rows all lack a sourced input says so, reason by reason, instead of
        # replaying them on guessed inputs.
        why = "; ".join(f"{n} row(s): {reason}" for reason, n in serving.reasons(lacking))
        raise click.UsageError(f"--subset {subset} selects no serving point (use all, calibration or holdout)"
                               + (f"; {len(lacking)} row(s) not predictable -- {why}" if lacking else ""))
    frame = serving.evaluate(points)
    summary = serving.summarise(frame)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "serving_points.csv", index=False)
        summary.to_csv(out / "serving_summary.csv", index=False)
    if as_json:
        options.echo_json({"points": frame.to_dict("records"), "summary": summary.to_dict("records")})
    else:
        click.echo(frame[["id", "split", "measured", "predicted", "error"]].to_markdown(index=False, floatfmt=".4g"))
        click.echo()
        click.echo(summary.to_markdown(index=False, floatfmt=".4g"))
    gated = summary[summary["split"] == "holdout"] if (summary["split"] == "holdout").any() else summary
    failed = gated[gated["median_abs_error"] > max_error]
    if not failed.empty:
        names = ", ".join(f"{r.source}/{r.metric} {100 * r.median_abs_error:.1f} %" for r in failed.itertuples())
        raise BoundExceeded(f"median |error| above {100 * max_error:.1f} %: {names}")


@click.command()
@click.option("--hw", "hws", multiple=True, help="Hardware config(s) to fit (default: every one with points).")
@click.option("--family", default=None,
              help="Fit one set of constants for a chip family of the points file (`families:`, "
                   "e.g. blackwell, instinct) on its calibration points instead.")
def calibrate(hws, family):
    """Fit efficiency.compute, efficiency.memory, the per-op, per-step and per-request overheads and the attention unit overhead on the calibration subset.

    \b
    Prints the fitted values (as YAML to paste into hw_configs/<name>.yaml) and the loss before
    and after; `accelsim validate --subset holdout` then checks them on the other half.
    """
    from accelsim.validate.calibrate import calibrate as fit
    from accelsim.validate.calibrate import fit_family

    fits = [fit_family(family)] if family is not None else fit(list(hws) or None)  # '' is no family
    for f in fits:
        a = f.after
        click.echo(f"# {f.hw}: {f.points} calibration points, sum log-error^2 {f.loss_before:.4f} -> "
                   f"{f.loss_after:.4f}")
        click.echo(f"efficiency: {{compute: {a.compute:.3f}, memory: {a.memory:.3f}}}  "
                   f"overhead: {a.overhead_s * 1e6:.2f} us  step overhead: {a.step_s * 1e6:.1f} us  "
                   f"request overhead: {a.request_s * 1e3:.3f} ms  attention unit overhead: {a.unit_s * 1e6:.2f} us")
        for name, share in f.runtimes_after.items():  # paste into the points file's runtimes
            click.echo(f"runtime {name}: gpu: {{attention_bandwidth: {share:.3f}}}  "
                       f"(was {f.runtimes_before[name]:.3f})")


COMMANDS = (validate, calibrate)
