"""Options and helpers shared by CLI commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from netdiff.errors import NetdiffError

InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", "-i", metavar="NAME=FILE", rich_help_panel="Inputs", help="Model input: NAME=FILE.npy (repeatable), or FILE.npy / FILE.npz for a single-input "
                          "model, or a directory of samples (.npy/.npz/.png/.jpg; compared per sample, see --jobs). Without it, a seeded random "
                          "input is used (with a warning).")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", metavar="FILE.caffemodel", rich_help_panel="Inputs", help="Caffe .caffemodel for a .prototxt model "
                                                                   "(default: <stem>.caffemodel beside it).")]
SeedOpt = Annotated[int, typer.Option("--seed", metavar="N", rich_help_panel="Inputs", help="Seed of the random input used when no --input is given.")]


def console(stderr: bool = False) -> Any:
    """A rich console (plain when not a terminal). Markup is off: tensor, layer and file names come
    from the inputs and must print as they are ("[bold]x" is a valid name); style with Text objects."""
    from rich.console import Console

    io = sys.modules.get("netdiff._io")  # loaded by any command that writes a report file (not by --help)
    stderr = stderr or bool(io is not None and io.STDOUT_OUTPUT)  # a report goes to stdout: the view must not mix in
    return Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False,
                   width=None if (sys.stderr if stderr else sys.stdout).isatty() else int(os.environ.get("COLUMNS", "140")))


def parse_options(values: list[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options (values stay strings)."""
    options: dict[str, Any] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise NetdiffError(f"{flag} expects KEY=VALUE, got {value!r}")
        options[key.strip().replace("-", "_")] = val
    return options


def model_options(weights: Path | None) -> dict[str, Any]:
    """Runner options from shared flags."""
    return {"weights": str(weights)} if weights is not None else {}


def print_findings(findings: list[Any], ok_message: str) -> int:
    """Print findings (or ``ok_message`` when there are none); return 1 when any is an error or warning."""
    out = console()
    if not findings:
        out.print(ok_message)
    for f in findings:
        out.print(f"{f.severity.upper()} {f.kind}: {f.message}", markup=False)
        if f.suggestion:
            out.print(f"  fix: {f.suggestion}", markup=False)
    return 1 if any(f.severity in ("error", "warning") for f in findings) else 0
