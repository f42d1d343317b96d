"""``netdiff dump MODEL --out DIR``: every intermediate tensor as a netdiff dump directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options
from netdiff.cli.app import app


@app.command("dump")
def dump_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Model to run (.onnx, Caffe .prototxt).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output directory (manifest.json + one .npy per tensor).")],
    input: InputOpt = None,
    weights: WeightsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")] = False,
    seed: SeedOpt = 0,
) -> None:
    """Run MODEL and write every intermediate tensor (graph inputs included) to --out."""
    from netdiff.dumping import dump_model
    from netdiff.inputs import parse_input_args
    from netdiff.progress import terminal_progress

    from netdiff._io import check_output_dir

    check_output_dir(out, "--out", force=force)
    result = dump_model(model, out, parse_input_args(input or []), force=force, seed=seed,
                        options=model_options(weights), progress=terminal_progress())
    console().print(f"wrote {result.tensors} tensors ({result.bytes / 1e6:.1f} MB) to {result.out}")
