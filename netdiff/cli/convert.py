"""``netdiff convert``: rewrite any readable dump as a netdiff dump directory or a Polygraphy JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from netdiff.cli.app import app


@app.command("convert")
def convert(
    dump: Annotated[Path, typer.Argument(metavar="DUMP", help="Dump file or directory to read (any registered format).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="PATH", help="Output directory (netdiff) or .json file (polygraphy).")],
    source_format: Annotated[Optional[str], typer.Option("--from", metavar="KEY", help="Input format; detected when omitted.")] = None,
    to: Annotated[Optional[str], typer.Option("--to", metavar="[netdiff|polygraphy]", help="Output format: netdiff or polygraphy "
                                              "(default: polygraphy for a .json path, else netdiff).")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", metavar="KEY=VALUE", help="Reader option key=value "
                                                         "(repeatable), e.g. side=runtime.")] = None,
    runner_name: Annotated[str, typer.Option("--runner-name", metavar="NAME", help="Runner name in a Polygraphy output.")] = "netdiff",
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output.")] = False,
) -> None:
    """Convert a dump (Ascend, NNIE, msit, RKNN, Polygraphy, npy, ...) to netdiff or Polygraphy format."""
    from netdiff.cli._common import console, parse_options
    from netdiff.convert import convert_dump

    result = convert_dump(dump, out, source_format=source_format, to=to, options=parse_options(option, "--option"),
                          force=force, runner_name=runner_name)
    extra = f" ({result.target_only} device-internal)" if result.target_only else ""
    console().print(f"wrote {result.tensors} tensors{extra} from {result.source_format} to {result.output} "
                    f"({result.to})")
