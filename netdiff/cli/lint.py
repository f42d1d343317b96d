"""``netdiff lint MODEL --target nnie|ascend``: what the converter will reject or compute differently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console
from netdiff.cli.app import app

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


@app.command("lint")
def lint_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Caffe .prototxt or .onnx model.")],
    target: Annotated[str, typer.Option("--target", "-t", metavar="[nnie|ascend]", help="Target toolchain: nnie or ascend.")],
    weights: WeightsOpt = None,
    input: InputOpt = None,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE.json", rich_help_panel="Outputs", help="Also write the findings as JSON here.")] = None,
    seed: SeedOpt = 0,
) -> None:
    """Check a model against the target's documented conversion constraints, before converting.

    Exit 0 when no error or warning fires, 1 when one does, 2 on bad input.
    """
    from rich.table import Table
    from rich.text import Text

    from netdiff._io import check_output_files, write_text_atomic
    from netdiff.inputs import parse_input_args
    from netdiff.lint import lint

    check_output_files({"--json": json_path})
    result = lint(model, target, weights=weights, inputs=parse_input_args(input or []), seed=seed)
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result.to_json(), indent=2) + "\n")
    out = console()
    out.print(Text(f"netdiff lint {result.model} --target {result.target}: {result.layers} layers ({result.format})"))
    for note in result.notes:
        out.print(Text(f"note: {note}"))
    if not result.findings:
        out.print(Text("OK: no rule fired", style="green"))
        return
    table = Table(show_lines=True)
    for column in ("severity", "rule", "layer", "finding", "fix"):
        table.add_column(column, overflow="fold")
    for f in result.findings:
        rule = f"{f.evidence.get('rule', f.kind)}" + (" (heuristic)" if f.evidence.get("heuristic") else "")
        table.add_row(Text(f.severity, style=_STYLE.get(f.severity, "")), Text(rule), Text(f.layer or "-"),
                      Text(f.message), Text(f.suggestion))
    out.print(table)
    counts = {s: sum(f.severity == s for f in result.findings) for s in ("error", "warning", "info")}
    out.print(Text(", ".join(f"{n} {s}" for s, n in counts.items())))
    if result.failed:
        raise typer.Exit(1)
