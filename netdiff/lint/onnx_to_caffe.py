"""Which Caffe layer each ONNX node would become (the path ONNX -> Caffe -> nnie_mapper takes).

Constant subgraphs (Constant, Shape of a static tensor, and everything computed only from constants)
are folded away, as onnx-simplifier and the usual ONNX->Caffe converters do; they produce no layer.
Each remaining node maps to one Caffe type with normalized parameters, or to None when Caffe has no
layer for it. Shapes come from ONNX shape inference; dynamic dims are None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from netdiff.lint.base import LintLayer, LintModel, Shape

#: ONNX ops that become one Caffe layer with no parameters lint needs.
SIMPLE = {
    "Relu": "ReLU", "LeakyRelu": "ReLU", "PRelu": "PReLU", "Sigmoid": "Sigmoid", "Tanh": "TanH", "Abs": "AbsVal",
    "Elu": "ELU", "Exp": "Exp", "Log": "Log", "Softplus": "BNLL", "Softmax": "Softmax", "Dropout": "Dropout",
    "Identity": "Split", "Concat": "Concat", "LRN": "LRN", "BatchNormalization": "BatchNorm",
    "InstanceNormalization": "MVN", "MeanVarianceNormalization": "MVN", "ArgMax": "ArgMax", "Gemm": "InnerProduct",
    "Sum": "Eltwise", "Max": "Eltwise", "SpaceToDepth": "Reorg", "Sqrt": "Power", "Reciprocal": "Power",
    "Neg": "Power",
}
#: ONNX ops that converters drop without a layer.
NO_LAYER = frozenset({"Cast"})


class _Graph:
    """Shapes, dtypes and constant values of a (shape-inferred) ONNX graph."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = vi.type.tensor_type
            self.dtypes[vi.name] = t.elem_type
            if t.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        self.consts: dict[str, np.ndarray | None] = {}
        for init in g.initializer:
            array = numpy_helper.to_array(init)
            self.consts[init.name] = array
            self.shapes[init.name] = tuple(array.shape)

    def value(self, name: str) -> np.ndarray | None:
        """Constant value of ``name`` when known."""
        return self.consts.get(name) if name else None

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)

    def fold(self, node: Any) -> bool:
        """Record ``node``'s outputs as constants when it only depends on constants; return True if so."""
        from onnx import helper, numpy_helper

        if node.op_type == "Constant":
            value = None
            for attr in node.attribute:
                if attr.name == "value":
                    value = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    value = np.asarray(helper.get_attribute_value(attr))
            self.consts[node.output[0]] = value
            if value is not None:
                self.shapes[node.output[0]] = tuple(value.shape)
            return True
        if node.op_type == "Shape":
            shape = self.shapes.get(node.input[0])
            if shape is None or any(d is None for d in shape):
                return False
            self.consts[node.output[0]] = np.asarray(shape, dtype=np.int64)
            return True
        inputs = [i for i in node.input if i]
        if inputs and all(i in self.consts for i in inputs):
            value = _evaluate(node, [self.consts[i] for i in inputs])
            for k, out in enumerate(node.output):
                self.consts[out] = value if k == 0 else None
            return True
        return False


def _evaluate(node: Any, values: list[np.ndarray | None]) -> np.ndarray | None:
    """Value of a small shape-computation node over known constants (None when not computed)."""
    if any(v is None for v in values):
        return None
    a = _attrs(node)
    op = node.op_type
    try:
        if op == "Gather":
            return np.take(values[0], values[1], axis=int(a.get("axis", 0)))
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes", values[1].tolist() if len(values) > 1 else None)
            if op == "Squeeze":
                return np.squeeze(values[0], axis=None if axes is None else tuple(axes))
            out = values[0]
            for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
                out = np.expand_dims(out, ax)
            return out
        if op == "Concat":
            return np.concatenate([np.atleast_1d(v) for v in values], axis=int(a.get("axis", 0)))
        if op == "Cast":
            from onnx import helper

            return values[0].astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))
        if op in ("Add", "Sub", "Mul", "Div"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                 "Div": np.floor_divide if values[0].dtype.kind in "iu" else np.divide}[op]
            return f(values[0], values[1])
        if op == "Identity":
            return values[0]
    except (ValueError, IndexError, TypeError, KeyError):
        return None
    return None


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pair(values: Any, default: int) -> tuple[int, int]:
    values = list(values or [])
    if not values:
        return default, default
    return int(values[0]), int(values[-1])


def _conv(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    a = _attrs(node)
    pads = list(a.get("pads", [0, 0, 0, 0]))
    half = len(pads) // 2
    params = {"group": int(a.get("group", 1)), "kernel": _pair(a.get("kernel_shape"), 1),
              "stride": _pair(a.get("strides"), 1), "dilation": _pair(a.get("dilations"), 1),
              "pad": _pair(pads[:half], 0), "pad_end": _pair(pads[half:], 0), "auto_pad": a.get("auto_pad", b"")}
    return ("Convolution" if node.op_type == "Conv" else "Deconvolution"), params


def _pool(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    if node.op_type.startswith("Global"):
        return "Pooling", {"global": True, "method": "MAX" if "Max" in node.op_type else "AVE"}
    a = _attrs(node)
    pads = list(a.get("pads", [0, 0, 0, 0]))
    half = len(pads) // 2
    return "Pooling", {"global": False, "method": "MAX" if node.op_type == "MaxPool" else "AVE",
                       "kernel": _pair(a.get("kernel_shape"), 1), "stride": _pair(a.get("strides"), 1),
                       "pad": _pair(pads[:half], 0), "pad_end": _pair(pads[half:], 0),
                       "ceil": bool(a.get("ceil_mode", 0)), "explicit_rounding": True,
                       "auto_pad": a.get("auto_pad", b"")}


def _transpose(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    perm = _attrs(node).get("perm")
    if perm is None:
        shape = g.shape(node.input[0]) or ()
        perm = list(range(len(shape)))[::-1]
    return "Permute", {"order": tuple(int(p) for p in perm)}


def _changed_axes(node: Any, g: _Graph) -> list[int]:
    ins, outs = g.shape(node.input[0]), g.shape(node.output[0])
    if ins is None or outs is None or len(ins) != len(outs):
        return []
    return [i for i, (a, b) in enumerate(zip(ins, outs)) if a != b]


def _slice(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    a = _attrs(node)
    rank = len(g.shape(node.input[0]) or ())
    if node.op_type == "Split":
        axis = int(a.get("axis", 0))
        return "Slice", {"axis": axis % rank if rank else axis, "axes": (axis % rank if rank else axis,)}
    axes = a.get("axes")
    steps = None
    if len(node.input) > 3:
        axes = g.value(node.input[3]) if node.input[3] else None
        if axes is None and node.input[3]:
            axes = _changed_axes(node, g) or None
    if len(node.input) > 4 and node.input[4]:
        steps = g.value(node.input[4])
    if axes is None:
        starts = a.get("starts") if "starts" in a else g.value(node.input[1]) if len(node.input) > 1 else None
        axes = list(range(len(starts))) if starts is not None else _changed_axes(node, g)
    axes = tuple(int(x) % rank if rank else int(x) for x in np.asarray(axes).ravel())
    if steps is not None and np.any(np.asarray(steps) != 1):
        return None, {"axes": axes, "reason": f"Slice with steps {np.asarray(steps).tolist()} (Caffe Slice has no stride)"}
    return "Slice", {"axis": axes[0] if axes else 1, "axes": axes}


def _tile(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    ins, outs = g.shape(node.input[0]), g.shape(node.output[0])
    reps = None
    if node.op_type == "Tile" and len(node.input) > 1:
        reps = g.value(node.input[1])
    if reps is None and ins is not None and outs is not None and len(ins) == len(outs) \
            and all(d is not None and d > 0 for d in (*ins, *outs)):
        reps = [o // i for i, o in zip(ins, outs)]
    params: dict[str, Any] = {}
    if reps is not None:
        tiled = {i: int(r) for i, r in enumerate(np.asarray(reps).ravel()) if int(r) != 1}
        params = {"repeats": tiled}
        if len(tiled) == 1:
            (axis, tiles), = tiled.items()
            params.update(axis=axis, tiles=tiles)
    return "Tile", params


def _resize(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    mode = _attrs(node).get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    ins, outs = g.shape(node.input[0]), g.shape(node.output[0])
    scale = None
    if ins and outs and len(ins) == 4 and all(d for d in (*ins[2:], *outs[2:])):
        sh, sw = outs[2] / ins[2], outs[3] / ins[3]
        scale = (sh, sw)
        if mode == "nearest" and sh == sw and float(sh).is_integer():
            return "Upsample", {"scale": int(sh), "mode": mode}
    return "Interp", {"mode": mode, "scale": scale}


def _arith(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    op = node.op_type
    consts = [i for i in node.input if i in g.consts]
    if op == "Pow":
        e = g.value(node.input[1])
        return ("Power", {"power": float(np.asarray(e).ravel()[0])}) if e is not None and np.asarray(e).size == 1 \
            else (None, {"reason": "Pow with a non-constant or non-scalar exponent"})
    if consts:
        c = g.value(consts[0])
        if c is not None and c.size == 1:
            v = float(c.ravel()[0])
            table = {"Add": {"shift": v}, "Sub": {"shift": -v}, "Mul": {"scale": v},
                     "Div": {"scale": 1.0 / v if v else float("inf")}}
            if op in table:
                return "Power", {"power": 1.0, **table[op]}
        return {"Add": "Bias", "Sub": "Bias", "Mul": "Scale", "Div": "Scale"}.get(op), {}
    same = len({g.shape(i) for i in node.input}) == 1
    if op in ("Add", "Sub", "Mul", "Max"):
        if same:
            return "Eltwise", {"operation": {"Add": "SUM", "Sub": "SUM", "Mul": "PROD", "Max": "MAX"}[op]}
        return {"Add": "Bias", "Mul": "Scale"}.get(op), {"broadcast": True}
    return None, {"reason": f"{op} of two tensors (Caffe Eltwise has SUM, PROD and MAX only)"}


def _clip(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    a = _attrs(node)
    lo = a.get("min", g.value(node.input[1]) if len(node.input) > 1 and node.input[1] else None)
    hi = a.get("max", g.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None)
    lo = None if lo is None else float(np.asarray(lo).ravel()[0])
    hi = None if hi is None else float(np.asarray(hi).ravel()[0])
    if lo == 0.0 and hi == 6.0:
        return "ReLU6", {}
    if lo == 0.0 and hi is None:
        return "ReLU", {}
    return "Clip", {"min": lo, "max": hi}


def _matmul(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    w = g.value(node.input[1])
    if w is not None and w.ndim == 2:
        return "InnerProduct", {}
    return None, {"reason": "MatMul of two tensors (Caffe InnerProduct needs constant 2-D weights)"}


def _reduce(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = g.value(node.input[1])
    shape = g.shape(node.input[0]) or ()
    rank = len(shape)
    axes = sorted(int(x) % rank for x in np.asarray(axes).ravel()) if axes is not None and rank else None
    if axes == [2, 3] and rank == 4 and node.op_type in ("ReduceMean", "ReduceMax") and a.get("keepdims", 1):
        return "Pooling", {"global": True, "method": "AVE" if node.op_type == "ReduceMean" else "MAX"}
    if axes and axes == list(range(axes[0], rank)) and node.op_type in ("ReduceMean", "ReduceSum"):
        return "Reduction", {"axis": axes[0]}
    return None, {"reason": f"{node.op_type} over axes {axes} (Caffe Reduction reduces all trailing axes)"}


def _reshape(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    out = g.shape(node.output[0])
    if node.op_type == "Flatten":
        return "Flatten", {"axis": int(_attrs(node).get("axis", 1))}
    spec = g.value(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
    ins = g.shape(node.input[0])
    if out is None and spec is not None and ins is not None and None not in ins:
        dims = [ins[i] if int(d) == 0 else int(d) for i, d in enumerate(spec.ravel())]
        if dims.count(-1) == 1:
            known = int(np.prod([d for d in dims if d != -1]))
            dims[dims.index(-1)] = int(np.prod(ins)) // known if known else -1
        out = tuple(dims)
        g.shapes[node.output[0]] = out
    return "Reshape", {"shape": out}


MAPPERS: dict[str, Callable[[Any, _Graph], tuple[str | None, dict[str, Any]]]] = {
    "Conv": _conv, "ConvTranspose": _conv, "MaxPool": _pool, "AveragePool": _pool, "GlobalAveragePool": _pool,
    "GlobalMaxPool": _pool, "Transpose": _transpose, "Slice": _slice, "Split": _slice, "Tile": _tile,
    "Expand": _tile, "Resize": _resize, "Upsample": _resize, "Add": _arith, "Sub": _arith, "Mul": _arith,
    "Div": _arith, "Min": _arith, "Pow": _arith, "Clip": _clip, "MatMul": _matmul, "ReduceMean": _reduce,
    "ReduceMax": _reduce, "ReduceSum": _reduce, "Reshape": _reshape, "Flatten": _reshape, "Squeeze": _reshape,
    "Unsqueeze": _reshape,
}


def caffe_type_of(node: Any, g: _Graph) -> tuple[str | None, dict[str, Any]]:
    """The Caffe layer type (or None) and normalized parameters for one ONNX node."""
    if node.op_type in MAPPERS and node.domain in ("", "ai.onnx"):
        return MAPPERS[node.op_type](node, g)
    if node.op_type in SIMPLE and node.domain in ("", "ai.onnx"):
        params: dict[str, Any] = {}
        if node.op_type == "Concat":
            params["axis"] = int(_attrs(node).get("axis", 1))
        return SIMPLE[node.op_type], params
    return None, {}


def onnx_lint_model(model: Any, path: str) -> LintModel:
    """An ONNX model as the Caffe layers it would become (constant subgraphs folded)."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a model ONNX cannot infer is still linted, with fewer shapes
        inferred = model
    g = _Graph(inferred)
    layers: list[LintLayer] = []
    for index, node in enumerate(inferred.graph.node):
        if g.fold(node) or node.op_type in NO_LAYER:
            continue
        ctype, params = caffe_type_of(node, g)
        name = node.name or f"{node.op_type}_{index}"
        bottoms = tuple(i for i in node.input if i and i not in g.consts)
        layers.append(LintLayer(name, ctype, node.op_type, bottoms, tuple(o for o in node.output if o), params,
                                tuple(g.shape(b) for b in bottoms), tuple(g.shape(o) for o in node.output if o),
                                len(layers)))
    inputs = {i.name: g.shapes.get(i.name, ()) for i in inferred.graph.input if i.name not in g.consts}
    from onnx import helper

    dtypes = {}
    for i in inferred.graph.input:
        if i.name in inputs:
            try:
                dtypes[i.name] = np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)).name
            except (KeyError, TypeError):
                dtypes[i.name] = "unknown"
    return LintModel(path, "onnx", layers, inputs=inputs, outputs=[o.name for o in inferred.graph.output],
                     input_dtypes=dtypes, onnx=inferred)
