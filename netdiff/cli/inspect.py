"""``netdiff inspect DUMP_OR_MODEL``: tensors, shapes, dtypes and value ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options
from netdiff.cli.app import app


@app.command("inspect")
def inspect_command(
    source: Annotated[Path, typer.Argument(metavar="DUMP_OR_MODEL", help="A dump (directory, .npz, device dump) or a model (run on the inputs).")],
    input: InputOpt = None,
    format: Annotated[str | None, typer.Option("--format", metavar="KEY", rich_help_panel="Formats", help="Force the reader or runner key.")] = None,
    weights: WeightsOpt = None,
    no_stats: Annotated[bool, typer.Option("--no-stats", rich_help_panel="Outputs", help="Only names, shapes and dtypes (no data read).")] = False,
    seed: SeedOpt = 0,
) -> None:
    """List the tensors of a dump or model with shapes, dtypes and ranges."""
    from netdiff.inputs import parse_input_args
    from netdiff.inspection import RICH_ROWS, inspect_source, plain_table

    rows, header = inspect_source(source, parse_input_args(input or []), format=format,
                                  options=model_options(weights), stats=not no_stats, seed=seed)
    if len(rows) > RICH_ROWS:  # a rich table of 100,000 rows takes minutes: plain aligned text
        import sys

        sys.stdout.write("\n".join(plain_table(header, rows)) + "\n")
        return
    out = console()
    out.print(InspectView(rows, header))


class InspectView:
    """The tensor table, fitted to the terminal width (see netdiff.reports.fit)."""

    def __init__(self, rows: list[list], header: str) -> None:
        self.rows = rows
        self.header = header

    def __rich_console__(self, console, options):
        from netdiff.reports.fit import Column, NameCell, fit_table, fixed_format, number

        specs = (("#", "right", None), ("tensor", "left", None), ("op", "left", 3), ("shape", "left", None),
                 ("dtype", "left", None), ("layout", "left", 1), ("min", "right", None), ("max", "right", None),
                 ("mean", "right", 2), ("nan/inf", "right", 4))
        columns = [Column(h, justify=j, drop=d, names=h == "tensor", style="dim" if h == "op" else "")
                   for h, j, d in specs]
        errors = {i: row[6] for i, row in enumerate(self.rows) if isinstance(row[6], str) and row[6]}
        for index in (6, 7, 8):
            values = [row[index] for row in self.rows]
            style = fixed_format([v for v in values if isinstance(v, float)], 4, small=1e-3)
            columns[index].cells = [number(v, 4, style) if isinstance(v, float) else "" for v in values]
        for index, column in enumerate(columns):
            if index not in (6, 7, 8):
                column.cells = [NameCell(row[index], note=errors.get(i, "")) if column.names else row[index]
                                for i, row in enumerate(self.rows)]
        yield fit_table(columns, options.max_width, title=self.header)
