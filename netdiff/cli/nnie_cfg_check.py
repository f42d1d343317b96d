"""``netdiff nnie-cfg-check MAPPER.cfg``: does the cfg's preprocessing match training?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import console, print_findings
from netdiff.cli.app import app


@app.command("nnie-cfg-check")
def nnie_cfg_check_command(
    cfg: Annotated[Path, typer.Argument(metavar="MAPPER.cfg", help="nnie_mapper .cfg file.")],
    mean: Annotated[str | None, typer.Option("--mean", metavar="M1,M2,M3", rich_help_panel="Calibration and preprocessing", help="Training mean per channel, 0..255 units, in "
                                                           "--channel-order (e.g. 123.675,116.28,103.53).")] = None,
    std: Annotated[str | None, typer.Option("--std", metavar="S1,S2,S3", rich_help_panel="Calibration and preprocessing", help="Training std per channel, 0..255 units "
                                                         "(e.g. 58.395,57.12,57.375).")] = None,
    scale: Annotated[str | None, typer.Option("--scale", metavar="FLOAT", rich_help_panel="Calibration and preprocessing", help="Training scale instead of --std (e.g. 0.0039215 "
                                                             "or 1/255).")] = None,
    channel_order: Annotated[str, typer.Option("--channel-order", metavar="[rgb|bgr|gray]", rich_help_panel="Calibration and preprocessing", help="Channel order the model was trained "
                                                                      "on: RGB or BGR.")] = "RGB",
    input_index: Annotated[int, typer.Option("--input-index", metavar="N", help="Which input of a multi-input cfg.")] = 0,
) -> None:
    """Compare a mapper cfg's mean/scale/channel order with the training preprocessing.

    Exit 0 when they agree, 1 when a mismatch (error or warning) is found, 2 on bad input.
    """
    from rich.table import Table
    from rich.text import Text

    from netdiff.nnie.preprocess import check_cfg_file

    parsed, findings = check_cfg_file(str(cfg), mean=mean, std=std, scale=scale, channel_order=channel_order,
                                      input_index=input_index)
    out = console()
    header = Table(box=None, show_header=False)
    for key, value in parsed.header().items():
        header.add_row(Text(str(key)), Text(str(value)))
    out.print(header)
    raise typer.Exit(print_findings(findings, "OK: the cfg's preprocessing matches the training preprocessing"))
