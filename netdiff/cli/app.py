"""The typer application object every command module registers on, and the global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="netdiff",
    help="Find the layer where a converted network (NNIE, Ascend, int8, fp16) diverges from its "
         "reference, and why.\n\nExit codes: 0 no divergence, 1 divergence found (or nothing compared), "
         "2 bad usage or bad input.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 110, "help_option_names": ["-h", "--help"]},
)


#: Set by the --debug global option: show tracebacks for user errors.
DEBUG = {"enabled": False}


def _version(value: bool) -> None:
    if value:
        from netdiff import __version__

        print(f"netdiff {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More messages on stderr (-v info, -vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no warnings).")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", metavar="FILE",
                                                  help="Also append every message (debug level) to FILE.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from netdiff.cli._logging import configure_logging

    DEBUG["enabled"] = debug
    configure_logging(verbose, quiet, log_file)
