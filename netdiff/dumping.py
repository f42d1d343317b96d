"""Dump a model's tensors to a netdiff dump directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdiff._io import prepare_output_dir
from netdiff.inputs import InputsLike, resolve_feeds
from netdiff.manifest import write_dump
from netdiff.progress import NullProgress, Progress
from netdiff.runners import load_model
from netdiff.types import Tensor


@dataclass(frozen=True)
class DumpResult:
    """What :func:`dump_model` wrote."""

    out: Path
    tensors: int
    bytes: int


def dump_model(model_path: str | Path, out: str | Path, inputs: InputsLike = None, *, force: bool = False,
               seed: int = 0, options: dict[str, Any] | None = None, progress: Progress | None = None) -> DumpResult:
    """Run a model on ``inputs`` and write every tensor to ``out``.

    Raises:
        OutputError: ``out`` is not empty and ``force`` is False.
    """
    progress = progress or NullProgress()
    prepare_output_dir(out, force=force)
    model = load_model(model_path, **(options or {}))
    feeds, described = resolve_feeds(model.input_specs(), inputs, seed=seed)
    progress.start(f"running {Path(model_path).name}", 1)
    try:
        dump = model.run(feeds)
    finally:
        progress.stop()
    total = {"bytes": 0}
    progress.start("writing", len(dump))

    def written(tensor: Tensor) -> None:
        total["bytes"] += tensor.load().nbytes
        progress.advance()

    meta = {**dump.meta, "inputs": described, "model": str(model_path), **converted_graph(model)}
    try:
        write_dump(dump, out, force=True, meta=meta,
                   on_tensor=written)
    finally:
        progress.stop()
    return DumpResult(Path(out), len(dump), total["bytes"])


def converted_graph(model: Any) -> dict[str, Any]:
    """For an ONNX model a converter wrote (QDQ, QOperator, fp16, optimized): ``graph_kind`` and the
    graph skeleton (``graph``) a later ``compare`` of the dump adapts it with (docs/dump-format.md)."""
    if getattr(model, "name", None) != "onnx" or not hasattr(model, "onnx_model"):
        return {}
    from netdiff.converted import graph_kind, graph_skeleton

    onnx_model = model.onnx_model()
    kind = graph_kind(onnx_model)
    return {} if kind == "float" else {"graph_kind": kind, "graph": graph_skeleton(onnx_model)}
