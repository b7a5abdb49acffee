"""`accelsim study FILE`: several models x chips x workloads -> one report folder."""
from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from accelsim.api import load_study, run_study
from accelsim.cli import options, output
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
    cells = run_study(spec)
    with output.report_folder(out or Path("reports") / spec.name, force) as (staging, out_dir):
        files = output.moved(write_study(spec, cells, staging), staging, out_dir)
    frame = study_frame(cells)
    if as_json:
        options.echo_json(frame.to_dict("records"))
        return
    shown = frame.copy()
    shown["tokens_per_s"] = shown["tokens_per_s"].map(lambda v: "" if pd.isna(v) else f"{v:,.1f}")
    shown["joules_per_token"] = shown["joules_per_token"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    click.echo(shown[["model", "workload", "hw", "tokens_per_s", "joules_per_token", "status"]]
               .to_string(index=False, max_colwidth=60))
    click.echo(f"\nreport: {files['html']} (index.md, study.csv and one folder per model/workload)")


COMMANDS = (study,)
