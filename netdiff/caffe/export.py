"""Write a Caffe deploy net as an ONNX file (the graph netdiff runs as the Caffe reference)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netdiff.errors import OutputError


@dataclass(frozen=True)
class ExportResult:
    """What :func:`caffe_to_onnx` wrote."""

    out: Path
    weights: str
    layers: int
    nodes: int
    bytes: int
    host_layers: tuple[str, ...] = ()


def caffe_to_onnx(prototxt: str | Path, out: str | Path, weights: str | Path | None = None,
                  force: bool = False) -> ExportResult:
    """Translate ``prototxt`` + caffemodel to ONNX and write it atomically to ``out``.

    Args:
        prototxt: Deploy prototxt.
        out: Output ``.onnx`` path.
        weights: caffemodel (default: found beside the prototxt, as the caffe runner does).
        force: Overwrite an existing ``out``.

    Raises:
        OutputError: ``out`` exists (without ``force``) or cannot be written.
        ModelError, UnsupportedOpError: The net cannot be read or translated.
    """
    from netdiff._io import write_atomic_with
    from netdiff.runners.caffe import CaffeModel

    out = Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (use --force to overwrite)")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    model = CaffeModel(prototxt, weights=weights)
    tr = model.translation()
    try:
        data = tr.model.SerializeToString()
    except ValueError as e:
        raise OutputError(f"{out}: the translated model exceeds protobuf's 2 GB limit") from e
    write_atomic_with(out, lambda handle: handle.write(data), binary=True)
    return ExportResult(out, str(tr.net.weights), len(tr.net.layers), len(tr.model.graph.node), len(data),
                        tuple(step.output.layer for step in tr.host_steps))
