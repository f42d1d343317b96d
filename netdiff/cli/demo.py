"""``netdiff demo``: the whole pipeline on a bundled model with a planted fault."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import console
from netdiff.cli.app import app


@app.command("demo")
def demo_command(
    out: Annotated[Path | None, typer.Option("--out", help="Keep the demo files (model, input, target dump, reports) here.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Also write the HTML report.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON report.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Show every layer.")] = False,
) -> None:
    """Compare a small CNN with a naively int8-converted copy whose conv3 has a weight outlier."""
    from rich.text import Text

    from netdiff.cli.compare import write_outputs
    from netdiff.demo import build_demo
    from netdiff.pipeline import compare
    from netdiff.progress import terminal_progress
    from netdiff.reports.terminal import ReportView

    out_console = console()
    with tempfile.TemporaryDirectory(prefix="netdiff-demo-") as tmp:
        workdir = out or Path(tmp)
        case = build_demo(workdir)
        out_console.print(Text.assemble(("netdiff demo", "bold"), f": reference {case.model.name}, target = the same "
                                        f"model with every Conv weight int8-quantized per tensor, dumped NHWC with "
                                        f"escaped names ({case.target}).\nPlanted fault: an outlier weight in conv3 "
                                        "ruins its quantization step.\n"))
        out_console.print(f"$ netdiff compare {case.model} {case.target} --input {case.input}\n", style="dim")
        report = compare(case.model, case.target, {"input": case.input}, progress=terminal_progress())
        write_outputs(report, json_path, None, html_path)
        out_console.print(ReportView(report, show_all=show_all))
    found = report.first_divergence == case.planted_layer
    out_console.print(Text("The planted fault was found.", style="green") if found else
                      Text(f"Expected first divergence at {case.planted_layer}, got {report.first_divergence}.",
                           style="red"))
    raise typer.Exit(0 if found else 1)
