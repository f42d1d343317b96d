"""The typer application object every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="netdiff",
    help="Find the layer where a converted network (NNIE, Ascend, int8, fp16) diverges from its "
         "reference, and why.\n\nExit codes: 0 no divergence, 1 divergence found, 2 bad usage or bad input.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 110},
)

#: Set by the --debug global option: show tracebacks for user errors.
DEBUG = {"enabled": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors.")) -> None:
    DEBUG["enabled"] = debug
