"""A Caffe net as netdiff sees it: deploy layers (from the prototxt) with weights merged by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.caffe.prototxt import Message, read_prototxt
from netdiff.errors import ModelError

#: Layer types that only make sense in training nets; they are named in errors, never run.
TRAINING_TYPES = frozenset({
    "Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData", "Accuracy", "SoftmaxWithLoss",
    "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss",
    "ContrastiveLoss", "HDF5Output", "Python",
})


@dataclass
class Layer:
    """One layer of the deploy net.

    Attributes:
        name: Layer name (unique within the net; duplicates get a ``_<n>`` suffix).
        type: Caffe type string ("Convolution", V1 enum names are converted).
        bottoms: Bottom blob names.
        tops: Top blob names.
        message: The whole layer message from the prototxt, every field kept by name.
        blobs: Weight blobs copied from the caffemodel by layer name (float32 arrays).
        legacy_blobs: For each blob, True when the caffemodel gave a legacy 4-D shape.
    """

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    message: Message
    blobs: list[np.ndarray] = field(default_factory=list)
    legacy_blobs: list[bool] = field(default_factory=list)

    def param(self, name: str) -> Message:
        """The ``<name>`` sub-message (e.g. "convolution_param"); empty when absent."""
        return self.message.sub(name)

    @property
    def params(self) -> dict[str, Any]:
        """Every ``*_param`` sub-message as a plain dict."""
        return {k: v for k, v in self.message.to_dict().items() if k.endswith("_param")}


@dataclass
class CaffeNet:
    """A parsed deploy net.

    Attributes:
        name: Net name.
        source: Prototxt path.
        inputs: Input blob name -> shape, in declaration order.
        input_layers: Input blob name -> the Input layer that declares it (absent for ``input:`` nets).
        layers: Executable layers in prototxt order (Input layers excluded).
        weights: caffemodel path, or None.
        blob_shapes: Blob name -> shape of its last writer (filled by :func:`load_net` when cheap).
        layer_shapes: Layer name -> shapes of its tops.
    """

    name: str
    source: str
    inputs: dict[str, tuple[int, ...]]
    input_layers: dict[str, str]
    layers: list[Layer]
    weights: str | None = None
    blob_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    layer_shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _v1_type(value: Any) -> str:
    from netdiff.caffe.proto import V1_ENUM_NAMES, V1_TYPES

    if isinstance(value, int):
        return V1_TYPES.get(value, f"V1Type{value}")
    if isinstance(value, str) and value in V1_ENUM_NAMES:
        return V1_TYPES[V1_ENUM_NAMES.index(value)]
    return str(value)


def _rule_met(rule: Message) -> bool:
    """Caffe's StateMeetsRule for the deploy state (phase TEST, level 0, no stages)."""
    phase = rule.get("phase")
    if phase is not None and phase not in ("TEST", 1):
        return False
    if rule.get("min_level") is not None and int(rule.get("min_level")) > 0:
        return False
    if rule.get("max_level") is not None and int(rule.get("max_level")) < 0:
        return False
    return not rule.getall("stage")


def _included(msg: Message) -> bool:
    """Caffe's FilterNet: exclude rules first, then any include rule that is met."""
    included = not msg.getall("include")
    for rule in msg.getall("exclude"):
        if isinstance(rule, Message) and _rule_met(rule):
            included = False
    for rule in msg.getall("include"):
        if isinstance(rule, Message) and _rule_met(rule):
            included = True
    return included


def _dims(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, Message):
        raise ModelError(f"{where}: expected a shape {{ dim: ... }} block")
    dims = shape.getall("dim")
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ModelError(f"{where}: input shape {dims} must list positive integer dims")
    return tuple(int(d) for d in dims)


def _net_inputs(root: Message, source: str) -> dict[str, tuple[int, ...]]:
    names = [str(n) for n in root.getall("input")]
    shapes = root.getall("input_shape")
    flat = root.getall("input_dim")
    inputs: dict[str, tuple[int, ...]] = {}
    if shapes:
        if len(shapes) != len(names):
            raise ModelError(f"{source}: {len(names)} input(s) but {len(shapes)} input_shape block(s)")
        for name, shape in zip(names, shapes):
            inputs[name] = _dims(shape, f"{source}: input {name}")
    elif flat:
        if len(flat) != 4 * len(names) or not all(isinstance(d, int) and d > 0 for d in flat):
            raise ModelError(f"{source}: {len(names)} input(s) need {4 * len(names)} positive input_dim values, "
                             f"found {flat}")
        for i, name in enumerate(names):
            inputs[name] = tuple(int(d) for d in flat[4 * i:4 * i + 4])
    elif names:
        raise ModelError(f"{source}: input {names[0]} has no input_shape or input_dim")
    return inputs


def parse_net(root: Message, source: str) -> CaffeNet:
    """Build a :class:`CaffeNet` (without weights) from a parsed prototxt."""
    inputs = _net_inputs(root, source)
    input_layers: dict[str, str] = {}
    layers: list[Layer] = []
    seen: dict[str, int] = {}
    v2, v1 = root.getall("layer"), root.getall("layers")
    if v2 and v1:
        raise ModelError(f"{source}: mixes V1 'layers' and V2 'layer' blocks")
    for index, msg in enumerate(v2 or v1):
        if not isinstance(msg, Message):
            raise ModelError(f"{source}: layer #{index} is not a {{ ... }} block")
        ltype = str(msg.get("type", "")) if v2 else _v1_type(msg.get("type", ""))
        name = str(msg.get("name", f"{ltype or 'layer'}_{index}"))
        if not ltype:
            raise ModelError(f"{source}: layer {name!r} has no type")
        if not _included(msg):
            continue
        bottoms = [str(b) for b in msg.getall("bottom")]
        tops = [str(t) for t in msg.getall("top")]
        if ltype == "Input":
            shapes = msg.sub("input_param").getall("shape")
            if not shapes or len(shapes) not in (1, len(tops)):
                raise ModelError(f"{source}: Input layer {name!r} needs one input_param shape per top "
                                 f"({len(tops)} tops, {len(shapes)} shapes)")
            for i, top in enumerate(tops):
                inputs[top] = _dims(shapes[i if len(shapes) > 1 else 0], f"{source}: Input layer {name!r}")
                input_layers[top] = name
            continue
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 0)
        layers.append(Layer(name, ltype, bottoms, tops, msg))
    if not layers:
        raise ModelError(f"{source}: no layers found (is this a Caffe deploy prototxt?)")
    return CaffeNet(str(root.get("name", "")), source, inputs, input_layers, layers)


def merge_weights(net: CaffeNet, weights: str | Path) -> None:
    """Copy blobs from a caffemodel into ``net`` by layer name, as Caffe's CopyTrainedLayersFrom does.

    Binary layers the deploy net lacks (auto-inserted Split, data and loss layers) are ignored.
    """
    from netdiff.caffe.proto import read_caffemodel

    binary = read_caffemodel(weights)
    by_name = {layer.name: layer for layer in net.layers}
    for blayer in binary.layers:
        target = by_name.get(blayer.name)
        if target is None or not blayer.blobs:
            continue
        target.blobs = [b.array for b in blayer.blobs]
        target.legacy_blobs = [b.legacy for b in blayer.blobs]
    net.weights = str(weights)


def load_net(prototxt: str | Path, weights: str | Path | None = None, *, shapes: bool = True) -> CaffeNet:
    """Parse a deploy prototxt (and merge weights from a caffemodel when given).

    Args:
        prototxt: Deploy ``.prototxt`` path.
        weights: ``.caffemodel`` path, or None for structure only.
        shapes: Also infer every blob's shape (cheap; unsupported layers stop the inference).

    Returns:
        The net; ``blob_shapes``/``layer_shapes`` are filled when inference succeeded.

    Raises:
        ModelError: The prototxt or caffemodel is unreadable or malformed.
    """
    net = parse_net(read_prototxt(prototxt), str(prototxt))
    if weights is not None:
        merge_weights(net, weights)
    if shapes:
        from netdiff.caffe.to_onnx import infer_shapes
        from netdiff.errors import NetdiffError

        try:
            infer_shapes(net)
        except NetdiffError:
            pass
    return net
