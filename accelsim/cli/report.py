"""`accelsim report DIR`: redraw a sweep's report from its saved results.csv and sweep.json."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim.cli import output
from accelsim.errors import AccelsimError
from accelsim.report.sweep import SweepSummary, load_frame, report_columns, rows_at, write_report


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def report(directory: Path):
    """Regenerate the Markdown/HTML report and plots of a sweep folder (from `accelsim sweep`)."""
    meta, results = directory / "sweep.json", directory / "results.csv"
    for path in (meta, results):
        if not path.is_file():
            raise AccelsimError(f"{directory}: no {path.name} here; point at a folder written by "
                                f"`accelsim sweep --out`")
    with output.files_into(directory, "DIRECTORY") as staging:
        summary = SweepSummary.load(meta)
        # Whole rows only for the designs the report lists (as `accelsim sweep` reads them).
        frame = load_frame(results, report_columns(summary))
        files = output.moved(write_report(frame, summary, staging,
                                          rows=lambda positions: rows_at(results, positions)),
                             staging, directory)
    click.echo(f"report: {files['html']}")


COMMANDS = (report,)
