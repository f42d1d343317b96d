"""Graph-building context shared by the layer translators, and the layer registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from netdiff.errors import ModelError

if TYPE_CHECKING:
    from netdiff.caffe.net import Layer

Shape = tuple[int, ...]
#: A translator: (builder, layer, bottom tensor names) -> top tensor names.
Translator = Callable[["Builder", "Layer", list[str]], list[str]]
LAYERS: dict[str, Translator] = {}


def translates(*types: str) -> Callable[[Translator], Translator]:
    """Register a translator for one or more Caffe layer types."""

    def decorate(fn: Translator) -> Translator:
        for t in types:
            LAYERS[t] = fn
        return fn

    return decorate


def canon_axis(axis: int, rank: int, layer: Layer, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: negative counts from the end; out of range is an error."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ModelError(f"layer {layer.name!r} ({layer.type}): {what} {axis} is out of range for a "
                         f"{rank}-D bottom")
    return axis + rank if axis < 0 else axis


class Builder:
    """Collects ONNX nodes, initializers and static shapes while layers are translated.

    Every tensor gets its shape recorded in :attr:`shapes` (Caffe formulas, not ONNX inference).
    The node producing a layer's top ``i`` is named after the layer (``name`` for the first
    top-producing node, ``name:i`` for others) and writes the reference tensor name.
    """

    def __init__(self, shapes_only: bool = False) -> None:
        self.shapes_only = shapes_only
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.shapes: dict[str, Shape] = {}
        self.taken: set[str] = set()
        self.layer: Layer | None = None
        self.outs: list[str] = []
        self._named: set[str] = set()
        self._counter = 0

    # ----- naming
    def reserve(self, names: Sequence[str]) -> None:
        """Mark names as used (graph inputs and every layer's output names)."""
        self.taken.update(names)

    def fresh(self, suffix: str) -> str:
        """A new unique helper tensor name ``<layer>/<suffix>``."""
        base = f"{self.layer.name}/{suffix}" if self.layer else suffix
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def begin(self, layer: Layer, outs: list[str]) -> None:
        """Start translating ``layer`` whose tops must be written to ``outs``."""
        self.layer, self.outs = layer, outs
        self._counter = 0

    # ----- weights and constants
    def weight(self, index: int, shape: Sequence[int], what: str = "weights") -> np.ndarray:
        """Blob ``index`` of the current layer reshaped to ``shape`` (element counts must agree)."""
        layer = self.layer
        shape = tuple(int(d) for d in shape)
        if index >= len(layer.blobs):
            if self.shapes_only:
                return np.broadcast_to(np.float32(0), shape)
            raise ModelError(f"layer {layer.name!r} ({layer.type}) needs {what} (blob {index}) but the caffemodel "
                             f"has {len(layer.blobs)} blob(s) for it")
        blob = layer.blobs[index]
        if blob.size != int(np.prod(shape, dtype=np.int64)):
            raise ModelError(f"layer {layer.name!r} ({layer.type}): {what} blob {index} has shape "
                             f"{list(blob.shape)} ({blob.size} values), expected {list(shape)}")
        return blob.reshape(shape).astype(np.float32, copy=False)

    def has_blob(self, index: int) -> bool:
        """True when the current layer has blob ``index`` (always True when only shapes are wanted)."""
        return self.shapes_only or index < len(self.layer.blobs)

    def const(self, suffix: str, value: Any, dtype: Any = np.float32) -> str:
        """Add an initializer and return its name."""
        from onnx import numpy_helper

        name = self.fresh(suffix)
        array = np.asarray(value, dtype=dtype)
        self.shapes[name] = tuple(array.shape)
        if not self.shapes_only:
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, suffix: str, values: Sequence[int]) -> str:
        """An int64 1-D constant."""
        return self.const(suffix, list(values), np.int64)

    # ----- nodes
    def node(self, op: str, inputs: Sequence[str], shape: Shape | Sequence[Shape], *,
             out: int | Sequence[int] | None = None, **attrs: Any) -> str | list[str]:
        """Add a node and return its output name(s).

        Args:
            op: ONNX op type.
            inputs: Input tensor names ("" for an omitted optional input).
            shape: Output shape, or a list of shapes for several outputs.
            out: Index (or indices) of the layer tops this node writes; None for a helper node.
            **attrs: ONNX attributes.
        """
        multi = bool(shape) and isinstance(shape[0], (tuple, list))
        shapes = [tuple(int(d) for d in s) for s in shape] if multi else [tuple(int(d) for d in shape)]
        tops = ([out] if isinstance(out, int) else list(out)) if out is not None else []
        if tops and len(tops) != len(shapes):
            raise ValueError("out must name one layer top per node output")
        names = [self.outs[i] for i in tops] if tops else [self.fresh(f"{op}{self._counter}_{k}" if len(shapes) > 1
                                                                        else f"{op}{self._counter}")
                                                             for k in range(len(shapes))]
        self._counter += 1
        if tops:
            node_name = self.layer.name if self.layer.name not in self._named else f"{self.layer.name}:{tops[0]}"
        else:
            node_name = names[0]
        self._named.add(node_name)
        for n, s in zip(names, shapes):
            self.shapes[n] = s
        if not self.shapes_only:
            from onnx import helper

            self.nodes.append(helper.make_node(op, list(inputs), names, name=node_name,
                                               **{k: v for k, v in attrs.items() if v is not None}))
        return names if multi else names[0]

    def identity(self, x: str, out: int) -> str:
        """Write ``x`` unchanged to top ``out``."""
        return self.node("Identity", [x], self.shapes[x], out=out)

    def reshape(self, x: str, shape: Sequence[int], out: int | None = None) -> str:
        """Reshape to a fully known constant shape."""
        shape = tuple(int(d) for d in shape)
        return self.node("Reshape", [x, self.ints("shape", shape)], shape, out=out)
