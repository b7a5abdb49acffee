"""`accelsim study FILE`: several models x chips x workloads -> one report folder."""
from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from accelsim.api import load_study, run_study
from accelsim.cli import options, output
from accelsim.cli.progress import bar
from accelsim.config.units import format_rate, format_si
from accelsim.report.study import study_frame, write_study


@click.command()
@click.argument("study_file")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: reports/<study name>].")
@output.force_option
@options.json_option
def study(study_file, out, force, as_json):
    """Run a study declared in YAML (models x chips x workloads) and write its report.

    \b
    name: headline
    title: Llama-3.1-8B and friends on four kinds of chip
    cases:
      - {model: llama-3.1-8b, hardware: [h100-sxm, hardwired-llama-3.1-8b]}
    workloads:
      - {phase: decode, batch: 1, context: 2048}
    """
    spec = load_study(study_file)
    with bar(len(spec.cases) * len(spec.workloads), "cells", quiet=as_json) as done:
        cells = run_study(spec, done)
    with output.report_folder(out or Path("reports") / spec.name, force) as (staging, out_dir):
        files = output.moved(write_study(spec, cells, staging), staging, out_dir)
    frame = study_frame(cells)
    if as_json:
        options.echo_json(frame.to_dict("records"))
        return
    shown = pd.DataFrame({
        "model": frame["model"], "workload": frame["workload"], "hw": frame["hw"],
        "formats": frame["formats"].fillna(""), "system": frame["layout"].fillna(""),
        "throughput": frame["tokens_per_s"].map(lambda v: "" if pd.isna(v) else format_rate(v, "tokens/s")),
        "energy/token": frame["joules_per_token"].map(lambda v: "" if pd.isna(v) else format_si(v, "J")),
        "status": frame["status"].map(lambda v: v if v == "ok" else "cannot run (see report)"),
    })
    click.echo(shown.to_string(index=False))
    click.echo(f"\nreport: {files['html']} (index.md, study.csv and one folder per model/workload)")


COMMANDS = (study,)
