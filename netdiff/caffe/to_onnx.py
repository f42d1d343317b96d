"""Translate a :class:`~netdiff.caffe.net.CaffeNet` into one ONNX graph with Caffe semantics.

Every layer output becomes its own ONNX tensor (SSA form), so in-place layers (ReLU, BatchNorm,
Scale writing into the Convolution's blob) keep their intermediate values. Tensor names:

* graph inputs are named by their blob (``data``);
* a layer with one top writes a tensor named after the **layer**;
* a layer with several tops writes ``<layer>:0``, ``<layer>:1``, ... (top order);
* a name already taken (e.g. a layer named like an input blob) gets ``#2``, ``#3``, ... appended.

The node writing a layer's first top is named after the layer; helper nodes and constants are
named ``<layer>/<op><n>``. Shapes are computed with Caffe's own formulas, never ONNX inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdiff.caffe import layers_basic, layers_conv, layers_norm, layers_resize, layers_shape, layers_ssd  # noqa: F401
from netdiff.caffe._builder import LAYERS, Builder, Shape
from netdiff.caffe.net import TRAINING_TYPES, CaffeNet
from netdiff.errors import InternalError, ModelError, UnsupportedOpError

OPSET = 17


@dataclass(frozen=True)
class LayerOutput:
    """One layer output: reference tensor name, producing layer, output index and top blob."""

    name: str
    layer: str
    type: str
    index: int
    blob: str
    order: int
    inputs: tuple[str, ...]
    shape: Shape


@dataclass
class Translation:
    """The translated graph and how its tensors map back to Caffe layers and blobs.

    Attributes:
        model: The ONNX ModelProto (None when only shapes were computed).
        inputs: Graph input (blob) name -> shape.
        outputs: Every layer output in execution order.
        blobs: Blob name -> tensor names that wrote it, in write order (inputs first).
        net_outputs: Tensor names of Caffe's net outputs (blobs no later layer consumes).
        net: The translated net.
        host_steps: Layers run in numpy after the graph (DetectionOutput), in order.
    """

    model: Any = None
    inputs: dict[str, Shape] = field(default_factory=dict)
    outputs: list[LayerOutput] = field(default_factory=list)
    blobs: dict[str, list[str]] = field(default_factory=dict)
    net_outputs: list[str] = field(default_factory=list)
    net: CaffeNet | None = None
    host_steps: list[HostStep] = field(default_factory=list)
    graph_only: list[str] = field(default_factory=list)

    def host_outputs(self) -> set[str]:
        """Tensor names produced by host steps."""
        return {h.output.name for h in self.host_steps}

    def graph_outputs(self) -> list[str]:
        """Outputs of the ONNX graph: the net outputs the graph computes, plus host-step inputs."""
        host = self.host_outputs()
        names = [n for n in self.net_outputs if n not in host]
        return names + [n for n in dict.fromkeys(self.graph_only) if n not in names]


@dataclass(frozen=True)
class HostStep:
    """A layer computed in numpy after the ONNX graph, from graph tensors."""

    output: LayerOutput
    inputs: tuple[str, ...]
    layer: Any


#: Layer types executed on the host after the graph (terminal layers with no faithful ONNX op).
HOST_TYPES = ("DetectionOutput",)


def supported_types() -> list[str]:
    """Caffe layer types netdiff can execute, sorted."""
    return sorted([*LAYERS, *HOST_TYPES, "Input", "Silence"])


def _output_names(layer_name: str, count: int, taken: set[str]) -> list[str]:
    bases = [layer_name] if count == 1 else [f"{layer_name}:{i}" for i in range(count)]
    names = []
    for base in bases:
        name, k = base, 2
        while name in taken:
            name = f"{base}#{k}"
            k += 1
        taken.add(name)
        names.append(name)
    return names


def _unsupported(layer: Any) -> UnsupportedOpError:
    if layer.type in TRAINING_TYPES:
        return UnsupportedOpError(f"layer {layer.name!r} has type {layer.type}, a training-only layer; use the "
                                  "deploy prototxt (Input layer or input:/input_shape) instead")
    return UnsupportedOpError(f"layer {layer.name!r} has unsupported Caffe type {layer.type!r}; supported: "
                              + ", ".join(supported_types()))


def _translate(net: CaffeNet, b: Builder, result: Translation) -> None:
    current: dict[str, str] = {}
    names: set[str] = set()
    for blob, shape in net.inputs.items():
        current[blob] = blob
        names.add(blob)
        b.shapes[blob] = shape
        result.inputs[blob] = shape
        result.blobs[blob] = [blob]
    b.reserve(list(names))
    available = list(net.inputs)
    plan = []
    for layer in net.layers:
        if layer.type not in LAYERS and layer.type not in HOST_TYPES and layer.type != "Silence":
            raise _unsupported(layer)
        plan.append(_output_names(layer.name, len(layer.tops), names))
    b.reserve(list(names))
    for order, (layer, outs) in enumerate(zip(net.layers, plan), start=1):
        missing = [x for x in layer.bottoms if x not in current]
        if missing:
            raise ModelError(f"{net.source}: layer {layer.name!r} ({layer.type}) reads blob {missing[0]!r} that no "
                             "earlier layer or input produces")
        xs = [current[x] for x in layer.bottoms]
        for x in layer.bottoms:
            if x in available:
                available.remove(x)
        if layer.type == "Silence":
            continue
        if layer.type in HOST_TYPES:
            _host_step(net, layer, outs, xs, order, result, current, available)
            b.shapes[outs[0]] = result.host_steps[-1].output.shape
            continue
        if any(x in result.host_outputs() for x in xs):
            raise ModelError(f"{net.source}: layer {layer.name!r} reads the output of a {HOST_TYPES[0]} layer; "
                             "netdiff runs those after the graph, so nothing may consume them")
        b.begin(layer, outs)
        try:
            got = LAYERS[layer.type](b, layer, xs)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
            # a malformed prototxt (a non-number where a number is due, too few bottoms): one line, no traceback
            raise ModelError(f"{net.source}: layer {layer.name!r} ({layer.type}) has malformed parameters or "
                             f"inputs ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r})") from e
        if list(got) != outs or any(o not in b.shapes for o in outs):
            raise InternalError(f"translator for {layer.type} wrote {got}, expected {outs}")
        for i, (top, out) in enumerate(zip(layer.tops, outs)):
            current[top] = out
            result.blobs.setdefault(top, []).append(out)
            result.outputs.append(LayerOutput(out, layer.name, layer.type, i, top, order, tuple(xs), b.shapes[out]))
            if top in available:
                available.remove(top)
            available.append(top)
    result.net_outputs = [current[blob] for blob in available]


def _host_step(net: CaffeNet, layer: Any, outs: list[str], xs: list[str], order: int, result: Translation,
               current: dict[str, str], available: list[str]) -> None:
    """Record a DetectionOutput layer to run in numpy; its inputs stay graph outputs."""
    if len(xs) != 3 or len(outs) != 1:
        raise ModelError(f"{net.source}: layer {layer.name!r} (DetectionOutput) needs 3 bottoms (loc, conf, "
                         "priorbox) and 1 top")
    top = layer.tops[0]
    out = LayerOutput(outs[0], layer.name, layer.type, 0, top, order, tuple(xs), (1, 1, -1, 7))
    result.host_steps.append(HostStep(out, tuple(xs), layer))
    for x in xs:
        result.graph_only.append(x)
    current[top] = outs[0]
    result.blobs.setdefault(top, []).append(outs[0])
    if top in available:
        available.remove(top)
    available.append(top)


def translate(net: CaffeNet) -> Translation:
    """Translate ``net`` (weights merged) into an ONNX model.

    Raises:
        UnsupportedOpError: A layer type has no translation (the message lists supported types).
        ModelError: Weights are missing or mis-shaped, or the net is inconsistent.
    """
    from onnx import TensorProto, helper

    b = Builder()
    result = Translation(net=net)
    _translate(net, b, result)
    graph = helper.make_graph(
        b.nodes, net.name or Path(net.source).stem,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in result.inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(b.shapes[n])) for n in result.graph_outputs()],
        initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="netdiff-caffe")
    model.ir_version = 8
    result.model = model
    return result


def infer_shapes(net: CaffeNet) -> Translation:
    """Fill ``net.blob_shapes`` and ``net.layer_shapes`` with Caffe's shape formulas.

    Shapes computed before a failing layer are kept; the error is re-raised.
    """
    result = Translation(net=net)
    b = Builder(shapes_only=True)
    try:
        _translate(net, b, result)
    finally:
        for blob, tensors in result.blobs.items():
            net.blob_shapes[blob] = b.shapes[tensors[-1]]
        for out in result.outputs:
            net.layer_shapes.setdefault(out.layer, []).append(out.shape)
    return result
