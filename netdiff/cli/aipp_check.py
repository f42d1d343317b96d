"""``netdiff aipp-check AIPP.cfg``: does an Ascend AIPP config reproduce the training preprocessing?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import print_findings
from netdiff.cli.app import app


def _floats(text: str, flag: str) -> list[float]:
    from netdiff.errors import InputError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated numbers, got {text!r}") from None


@app.command("aipp-check")
def aipp_check_command(
    config: Annotated[Path, typer.Argument(metavar="AIPP.cfg", help="AIPP config (aipp_op { ... } text) or an om JSON with AIPP embedded.")],
    mean: Annotated[str, typer.Option("--mean", metavar="M1,M2,M3", rich_help_panel="Calibration and preprocessing", help="Training mean per channel, in --channel-order, 0..255 units "
                                                     "(e.g. 123.675,116.28,103.53).")],
    std: Annotated[str, typer.Option("--std", metavar="S1,S2,S3", rich_help_panel="Calibration and preprocessing", help="Training std per channel, 0..255 units (e.g. 58.395,57.12,57.375).")],
    channel_order: Annotated[str, typer.Option("--channel-order", metavar="[rgb|bgr|gray]", rich_help_panel="Calibration and preprocessing", help="Channel order the model was trained on: RGB or BGR.")] = "RGB",
) -> None:
    """Check the AIPP swap, mean and var_reci fields against the training preprocessing.

    Exit 0 when they agree, 1 when a mismatch is found, 2 on bad input.
    """
    from netdiff.ascend.aipp import compare_preprocessing, load_aipp_config

    cfg = load_aipp_config(config)
    findings = compare_preprocessing(cfg, _floats(mean, "--mean"), _floats(std, "--std"), channel_order)
    raise typer.Exit(print_findings(findings, "OK: the AIPP config reproduces the training preprocessing"))
