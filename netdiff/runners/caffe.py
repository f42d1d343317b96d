"""Run a Caffe deploy net (prototxt + caffemodel) without Caffe: translated to ONNX, run by onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import ModelError, ReferenceRunError, UnsupportedOpError
from netdiff.runners.base import InputSpec, Model, register_runner
from netdiff.types import Dump, Tensor


def find_weights(prototxt: Path) -> Path:
    """The caffemodel for ``prototxt``: ``<stem>.caffemodel`` beside it, else the only one in its folder.

    Raises:
        ModelError: No caffemodel, or several and none named after the prototxt.
    """
    beside = prototxt.with_suffix(".caffemodel")
    if beside.is_file():
        return beside
    found = sorted(p for p in prototxt.parent.glob("*.caffemodel") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelError(f"{prototxt}: no weights found (no .caffemodel beside it); pass weights=... "
                         "(CLI: --weights model.caffemodel)")
    raise ModelError(f"{prototxt}: several caffemodels beside it ({', '.join(p.name for p in found)}) and none "
                     f"named {beside.name}; pass weights=... (CLI: --weights)")


def _run_host_step(step: Any, tensors: dict[str, Tensor]) -> Tensor:
    """Run a layer netdiff executes in numpy after the graph (DetectionOutput)."""
    from netdiff.caffe.detection import DetectionParams, detection_output

    loc, conf, prior = (tensors[name].load() for name in step.inputs)
    value = detection_output(loc, conf, prior, DetectionParams.from_layer(step.layer))
    out = step.output
    return Tensor.from_array(out.name, value, op_type=out.type, order=out.order, inputs=out.inputs,
                             source="numpy (caffe host step)",
                             meta={"node": out.layer, "output_index": out.index, "blob": out.blob})


def _require_inputs(net: Any) -> None:
    """A net without Input layer / input: fields: the deploy hint when it is a train_test net."""
    from netdiff.caffe.net import TRAINING_TYPES

    if net.inputs:
        return
    training = next((layer for layer in net.layers if layer.type in TRAINING_TYPES), None)
    if training is not None:
        raise UnsupportedOpError(f"{net.source}: layer {training.name!r} has type {training.type}, a training-only layer; use "
                         "the deploy prototxt (Input layer or input:/input_shape) instead")
    raise ModelError(f"{net.source}: the net declares no input (no Input layer, no input:/input_shape); "
                     "use the deploy prototxt")


@register_runner("caffe")
class CaffeModel(Model):
    """A Caffe deploy net executed per layer with Caffe semantics (see docs/caffe.md).

    Options:
        weights: Path to the ``.caffemodel`` (default: found beside the prototxt).
    """

    suffixes = (".prototxt",)
    options = ("weights",)

    def __init__(self, path: str | Path, weights: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, **options)
        self.weights = Path(weights) if weights is not None else None
        self._translation: Any = None
        self._batched: dict[tuple, Any] = {}  # input shapes -> translation
        self._current: Any = None
        self._structure: Any = None
        self._sessions: dict[int, Any] = {}  # id(translation) -> capture session, built once each

    def _weights_path(self) -> Path:
        if self.weights is not None:
            if not self.weights.is_file():
                raise ModelError(f"{self.weights}: caffemodel not found")
            return self.weights
        return find_weights(self.path)

    def net(self) -> Any:
        """The parsed net with weights merged (:class:`netdiff.caffe.CaffeNet`)."""
        return self.translation().net

    def translation(self, batch: int | None = None, shapes: dict[str, tuple[int, ...]] | None = None) -> Any:
        """The ONNX translation for the declared input shapes, or for another ``batch`` or input
        ``shapes`` (built once each).

        Caffe reshapes a deploy net to the input it is fed; the translation fixes every shape, so
        another batch or spatial size (a fully convolutional net such as MTCNN P-Net run on an image
        pyramid) gets its own translation, with every shape inferred again by Caffe's formulas.

        Raises:
            ModelError: The net does not run at those shapes (an InnerProduct expects the declared size, ...).
        """
        if self._translation is None:
            from netdiff.caffe.net import load_net
            from netdiff.caffe.to_onnx import translate

            net = load_net(self.path, self._weights_path(), shapes=False)
            self._translation = translate(net)
        base = self._translation
        wanted = {name: tuple(shape) for name, shape in base.net.inputs.items()}
        if batch is not None:
            wanted = {name: (batch, *shape[1:]) for name, shape in wanted.items()}
        for name, shape in (shapes or {}).items():
            if name in wanted:
                wanted[name] = tuple(int(d) for d in shape)
        key = tuple(sorted(wanted.items()))
        if wanted == {name: tuple(shape) for name, shape in base.net.inputs.items()}:
            return base
        if key not in self._batched:
            from copy import copy

            from netdiff.caffe.to_onnx import translate
            from netdiff.errors import NetdiffError

            net = copy(base.net)
            net.inputs = dict(wanted)
            try:
                self._batched[key] = translate(net)
            except NetdiffError as e:
                declared = ", ".join(f"{n} {list(s)}" for n, s in base.net.inputs.items())
                given = ", ".join(f"{n} {list(s)}" for n, s in wanted.items())
                raise ModelError(f"{self.path}: the net does not run at input {given} (declared {declared}): "
                                 f"{str(e).splitlines()[0]}") from e
        return self._batched[key]

    def input_specs(self) -> list[InputSpec]:
        if self._structure is None:
            from netdiff.caffe.net import load_net

            self._structure = load_net(self.path, shapes=False)
            _require_inputs(self._structure)
        return [InputSpec(name, tuple(shape), "float32", flexible_batch=True, flexible_spatial=len(shape) == 4)
                for name, shape in self._structure.inputs.items()]

    def onnx_model(self) -> Any:
        """The translated graph of the last run (its batch), else of the declared shapes."""
        return (self._current or self.translation()).model

    def describe(self) -> dict[str, Any]:
        tr = self.translation()
        return {"path": str(self.path), "format": self.name, "kind": "model", "weights": tr.net.weights,
                "layers": len(tr.net.layers)}

    def _run(self, feeds: dict[str, np.ndarray], on_tensor: Callable[[str], None] | None) -> Dump:
        from netdiff.runners.onnxrt import check_feeds, make_session

        specs = {s.name: s for s in self.input_specs()}
        check_feeds(feeds, specs)
        tr = self.translation(shapes={name: tuple(np.shape(v)) for name, v in feeds.items()})
        self._current = tr
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        names = [o.name for o in tr.outputs]
        session = self._sessions.get(id(tr))
        if session is None:  # translations are kept per batch, so their ids stay valid
            session = self._sessions[id(tr)] = make_session(tr.model, outputs=names)
        try:
            values = session.run(names, feeds)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ReferenceRunError(f"{self.path}: onnxruntime failed on the translated Caffe net: "
                                    f"{str(e).splitlines()[0]}") from e
        tensors: dict[str, Tensor] = {}
        net = tr.net
        for name in tr.inputs:
            layer = net.input_layers.get(name, name)
            index = [t for t, lay in net.input_layers.items() if lay == layer].index(name) \
                if name in net.input_layers else 0
            tensors[name] = Tensor.from_array(name, feeds[name], op_type="Input", order=0, source="input",
                                              meta={"node": layer, "output_index": index, "blob": name})
        for out, value in zip(tr.outputs, values):
            tensors[out.name] = Tensor.from_array(
                out.name, np.asarray(value), op_type=out.type, order=out.order, inputs=out.inputs,
                source="onnxruntime (caffe)", meta={"node": out.layer, "output_index": out.index, "blob": out.blob})
            if on_tensor is not None:
                on_tensor(out.name)
        for step in tr.host_steps:
            tensors[step.output.name] = _run_host_step(step, tensors)
        meta = {"blobs": {k: list(v) for k, v in tr.blobs.items()}, "weights": net.weights, "tensor_names": "layer"}
        return Dump(tensors=tensors, source=str(self.path), format=self.name, graph_inputs=list(tr.inputs),
                    graph_outputs=list(tr.net_outputs), meta=meta)
