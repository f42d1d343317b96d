"""``netdiff report REPORT.json``: re-render a saved JSON report (HTML, Model Explorer node data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import console
from netdiff.cli.app import app


@app.command("report")
def report_command(
    report_json: Annotated[Path, typer.Argument(metavar="REPORT.json", help="A report written by `netdiff compare --json`.")],
    html_path: Annotated[Path | None, typer.Option("--html", metavar="FILE.html", rich_help_panel="Outputs", help="Write a self-contained HTML report.")] = None,
    model_explorer_path: Annotated[Path | None, typer.Option("--model-explorer", metavar="FILE.json", rich_help_panel="Outputs", help="Write per-node cosine as Google Model Explorer node data JSON.")] = None,
    graph_id: Annotated[str | None, typer.Option("--graph-id", metavar="ID", rich_help_panel="Outputs", help="Wrap the Model Explorer data for this graph id (the ONNX graph name).")] = None,
    show_all: Annotated[bool, typer.Option("--all", rich_help_panel="Outputs", help="Terminal view: show every layer, not only those around origins and the worst.")] = False,
) -> None:
    """Render a saved JSON report; without options, print it to the terminal."""
    from netdiff.reports.html import load_report, write_html
    from netdiff.reports.model_explorer import write_node_data
    from netdiff.reports.terminal import ReportView

    from netdiff._io import check_output_files

    check_output_files({"--html": html_path, "--model-explorer": model_explorer_path}, inputs=(report_json,))
    report = load_report(report_json)
    if html_path is not None:
        write_html(report, html_path)
        console().print(f"wrote {html_path}")
    if model_explorer_path is not None:
        write_node_data(report, model_explorer_path, graph_id)
        console().print(f"wrote {model_explorer_path}")
    if html_path is None and model_explorer_path is None:
        from netdiff.cli._dataset import print_dataset

        print_dataset(report)
        console().print(ReportView(report, show_all=show_all))
