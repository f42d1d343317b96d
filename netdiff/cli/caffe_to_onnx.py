"""``netdiff caffe-to-onnx deploy.prototxt --out model.onnx``: the Caffe reference graph as ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import WeightsOpt, console
from netdiff.cli.app import app


@app.command("caffe-to-onnx")
def caffe_to_onnx_command(
    prototxt: Annotated[Path, typer.Argument(metavar="PROTOTXT", help="Caffe deploy .prototxt.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE.onnx", help="Output .onnx file.")],
    weights: WeightsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Translate a Caffe net (prototxt + caffemodel) to ONNX with Caffe semantics (ceil pooling, ...)."""
    from netdiff.caffe.export import caffe_to_onnx

    from netdiff._io import check_output_file

    check_output_file(out, "--out", force=force)
    result = caffe_to_onnx(prototxt, out, weights=weights, force=force)
    console().print(f"wrote {result.out} ({result.layers} layers, {result.nodes} ONNX nodes, "
                    f"{result.bytes / 1e6:.1f} MB) from weights {result.weights}")
    if result.host_layers:
        console().print(f"not in the ONNX file (no faithful ONNX op; netdiff runs them in numpy): "
                        f"{', '.join(result.host_layers)}; their inputs are graph outputs")
