"""``netdiff inspect DUMP_OR_MODEL``: tensors, shapes, dtypes and value ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options
from netdiff.cli.app import app


@app.command("inspect")
def inspect_command(
    source: Annotated[Path, typer.Argument(help="A dump (directory, .npz, device dump) or a model (run on the inputs).")],
    input: InputOpt = None,
    format: Annotated[str | None, typer.Option("--format", help="Force the reader or runner key.")] = None,
    weights: WeightsOpt = None,
    no_stats: Annotated[bool, typer.Option("--no-stats", help="Only names, shapes and dtypes (no data read).")] = False,
    seed: SeedOpt = 0,
) -> None:
    """List the tensors of a dump or model with shapes, dtypes and ranges."""
    from rich.table import Table

    from netdiff.inputs import parse_input_args
    from netdiff.inspection import inspect_source

    rows, header = inspect_source(source, parse_input_args(input or []), format=format,
                                  options=model_options(weights), stats=not no_stats, seed=seed)
    table = Table(title=header, title_justify="left", box=None, header_style="bold")
    for column in ("#", "tensor", "op", "shape", "dtype", "layout", "min", "max", "mean", "nan/inf"):
        table.add_column(column, justify="right" if column in ("#", "min", "max", "mean") else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)
