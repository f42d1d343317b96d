"""``netdiff demo``: the whole pipeline on a bundled model with a planted fault.

The demo's files stay in ``./netdiff-demo/`` (or ``--out DIR``), so the printed ``netdiff
compare`` command can be rerun; a folder that exists but was not written by the demo is never
touched. When the working directory is not writable the files go to a kept temporary folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import console
from netdiff.cli.app import app
from netdiff.errors import OutputError

DEFAULT_DIR = Path("netdiff-demo")
#: Written into the demo folder; its presence lets a later run overwrite the folder.
MARKER = "NETDIFF-DEMO.txt"


@app.command("demo")
def demo_command(
    out: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Where to keep the demo files (model, input, target dump, reports); default ./netdiff-demo.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", metavar="FILE.html", rich_help_panel="Outputs", help="Also write the HTML report here (one is always kept in the demo folder).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE.json", rich_help_panel="Outputs", help="Also write the JSON report here (one is always kept in the demo folder).")] = None,
    show_all: Annotated[bool, typer.Option("--all", rich_help_panel="Outputs", help="Show every layer.")] = False,
) -> None:
    """Compare a small CNN with a naively int8-converted copy whose conv3 has a weight outlier."""
    from rich.text import Text

    from netdiff.cli.compare import write_outputs
    from netdiff.demo import build_demo
    from netdiff.pipeline import compare
    from netdiff.progress import terminal_progress
    from netdiff.reports.terminal import ReportView

    from netdiff._io import check_output_dir, check_output_files

    check_output_dir(out, "--out", force=True)
    check_output_files({"--html": html_path, "--json": json_path})
    out_console = console()
    workdir, note = demo_dir(out)
    case = build_demo(workdir)
    command = " ".join(["netdiff compare", *(shlex.quote(_shown(p)) for p in (case.model, case.target)),
                        "--input", shlex.quote(_shown(case.input)), "--html", shlex.quote(_shown(workdir / "report.html"))])
    (workdir / MARKER).write_text(
        "Written by `netdiff demo`; rerun the comparison with:\n\n"
        f"    {command}\n\nDelete this folder when done (a later `netdiff demo` overwrites it).\n", encoding="utf-8")
    out_console.print(Text.assemble(("netdiff demo", "bold"), f": reference {case.model.name}, target = the same "
                                    f"model with every Conv weight int8-quantized per tensor, dumped NHWC with "
                                    f"escaped names ({_shown(case.target)}).\nPlanted fault: an outlier weight "
                                    "in conv3 ruins its quantization step.\n"))
    out_console.print(f"$ {command}\n", style="dim", soft_wrap=True)
    report = compare(case.model, case.target, {"input": case.input}, progress=terminal_progress())
    write_outputs(report, workdir / "report.json", None, workdir / "report.html")
    write_outputs(report, json_path, None, html_path)
    out_console.print(ReportView(report, show_all=show_all))
    found = report.first_divergence == case.planted_layer
    out_console.print(Text("The planted fault was found.", style="green") if found else
                      Text(f"Expected first divergence at {case.planted_layer}, got {report.first_divergence}.",
                           style="red"))
    out_console.print(Text(f"{note}The demo files are kept in {_shown(workdir)}{os.sep} (HTML report: "
                           f"{_shown(workdir / 'report.html')}); rerun with the command above, delete the "
                           "folder when done.", style="dim"))
    raise typer.Exit(0 if found else 1)


def demo_dir(out: Path | None) -> tuple[Path, str]:
    """The folder for the demo's files and a note on where it is (empty for the usual places).

    Raises:
        OutputError: The folder exists, is not empty and was not written by ``netdiff demo``.
    """
    path = out if out is not None else DEFAULT_DIR
    try:
        _claim(path)
        return path, ""
    except PermissionError:
        if out is not None:
            raise OutputError(f"{path}: cannot write the demo files here (permission denied)") from None
    kept = Path(tempfile.mkdtemp(prefix="netdiff-demo-"))
    return kept, "The current directory is not writable. "


def _claim(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory; pass --out DIR for the demo files")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise OutputError(f"{path}: exists and was not written by netdiff demo; pass --out DIR for the demo files")
        shutil.rmtree(path / "device_dump", ignore_errors=True)  # stale tensors of an older demo
    path.mkdir(parents=True, exist_ok=True)
    probe = path / MARKER
    with open(probe, "a", encoding="utf-8"):
        pass


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)
