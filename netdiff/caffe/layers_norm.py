"""Normalisation layers: BatchNorm, Scale, Bias, Normalize (SSD), MVN."""

from __future__ import annotations

import numpy as np

from netdiff.caffe._builder import Builder, canon_axis, translates
from netdiff.caffe.net import Layer
from netdiff.errors import ModelError


def _channels(b: Builder, layer: Layer, x: str) -> int:
    shape = b.shapes[x]
    if len(shape) < 2:
        raise ModelError(f"layer {layer.name!r} ({layer.type}): bottom {list(shape)} has no channel axis")
    return shape[1]


@translates("BatchNorm")
def batch_norm(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    c = _channels(b, layer, x)
    p = layer.param("batch_norm_param")
    eps = float(p.get("eps", 1e-5))
    if p.get("use_global_stats", True) is False:
        return [_batch_stats(b, x, shape, eps)]
    mean, var = b.weight(0, (c,), "mean"), b.weight(1, (c,), "variance")
    factor = float(b.weight(2, (1,), "scale factor")[0])
    f = np.float32(0.0 if factor == 0.0 else 1.0 / np.float32(factor))
    inputs = [x, b.const("scale", np.ones(c)), b.const("B", np.zeros(c)),
              b.const("mean", mean * f), b.const("var", var * f)]
    return [b.node("BatchNormalization", inputs, shape, out=0, epsilon=eps)]


def _batch_stats(b: Builder, x: str, shape: tuple[int, ...], eps: float) -> str:
    """``use_global_stats: false``: normalise with this batch's per-channel mean and variance."""
    axes = [0, *range(2, len(shape))]
    stat = tuple(1 if i in axes else d for i, d in enumerate(shape))
    mean = b.node("ReduceMean", [x], stat, axes=axes, keepdims=1)
    centred = b.node("Sub", [x, mean], shape)
    var = b.node("ReduceMean", [b.node("Mul", [centred, centred], shape)], stat, axes=axes, keepdims=1)
    std = b.node("Sqrt", [b.node("Add", [var, b.const("eps", eps)], stat)], stat)
    return b.node("Div", [centred, std], shape, out=0)


def _factor_shape(b: Builder, layer: Layer, shape: tuple[int, ...], axis: int, num_axes: int) -> tuple[int, ...]:
    if num_axes == 0:
        return ()
    axis = canon_axis(axis, len(shape), layer)
    if num_axes < -1 or (num_axes > 0 and axis + num_axes > len(shape)):
        raise ModelError(f"layer {layer.name!r} ({layer.type}): num_axes {num_axes} from axis {axis} exceeds "
                         f"bottom {list(shape)}")
    return tuple(shape[axis:]) if num_axes == -1 else tuple(shape[axis:axis + num_axes])


def _broadcastable(b: Builder, layer: Layer, shape: tuple[int, ...], axis: int, fshape: tuple[int, ...]) -> tuple:
    """Shape that lines ``fshape`` up at ``axis`` for right-aligned ONNX broadcasting."""
    if not fshape:
        return ()
    axis = canon_axis(axis, len(shape), layer)
    if tuple(shape[axis:axis + len(fshape)]) != fshape:
        raise ModelError(f"layer {layer.name!r} ({layer.type}): factor shape {list(fshape)} does not match bottom "
                         f"{list(shape)} from axis {axis}")
    return fshape + (1,) * (len(shape) - axis - len(fshape))


def _affine(b: Builder, layer: Layer, xs: list[str], param: str, op: str, bias_term: bool) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    p = layer.param(param)
    axis, num_axes = int(p.get("axis", 1)), int(p.get("num_axes", 1))
    if len(xs) > 1:
        fshape = b.shapes[xs[1]]
        target = _broadcastable(b, layer, shape, axis, fshape)
        factor = xs[1] if target == fshape else b.reshape(xs[1], target)
        bias_index = 0
    else:
        fshape = _factor_shape(b, layer, shape, axis, num_axes)
        target = _broadcastable(b, layer, shape, axis, fshape) if fshape else ()
        factor = b.const("scale" if op == "Mul" else "bias", b.weight(0, fshape, "factor").reshape(target))
        bias_index = 1
    if not bias_term:
        return [b.node(op, [x, factor], shape, out=0)]
    y = b.node(op, [x, factor], shape)
    beta = b.weight(bias_index, fshape, "bias").reshape(target)
    return [b.node("Add", [y, b.const("bias", beta)], shape, out=0)]


@translates("Scale")
def scale(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return _affine(b, layer, xs, "scale_param", "Mul", bool(layer.param("scale_param").get("bias_term", False)))


@translates("Bias")
def bias(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return _affine(b, layer, xs, "bias_param", "Add", False)


@translates("Normalize")
def normalize(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    if len(shape) < 2:
        raise ModelError(f"layer {layer.name!r} (Normalize): bottom {list(shape)} has no channel axis")
    p = layer.param("norm_param")
    across = bool(p.get("across_spatial", True))
    shared = bool(p.get("channel_shared", True))
    eps = float(p.get("eps", 1e-10))
    axes = list(range(1, len(shape))) if across else [1]
    stat = tuple(1 if i in axes else d for i, d in enumerate(shape))
    sumsq = b.node("ReduceSumSquare", [x], stat, axes=axes, keepdims=1)
    norm = b.node("Sqrt", [b.node("Add", [sumsq, b.const("eps", eps)], stat)], stat)
    y = b.node("Div", [x, norm], shape)
    c = 1 if shared else shape[1]
    s = b.weight(0, (c,), "scale")
    s = s if shared else s.reshape((c,) + (1,) * (len(shape) - 2))
    return [b.node("Mul", [y, b.const("scale", s)], shape, out=0)]


@translates("MVN")
def mvn(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    p = layer.param("mvn_param")
    axes = list(range(1 if p.get("across_channels", False) else 2, len(shape)))
    stat = tuple(1 if i in axes else d for i, d in enumerate(shape))
    mean = b.node("ReduceMean", [x], stat, axes=axes, keepdims=1)
    if p.get("normalize_variance", True) is False:
        return [b.node("Sub", [x, mean], shape, out=0)]
    centred = b.node("Sub", [x, mean], shape)
    var = b.node("ReduceMean", [b.node("Mul", [centred, centred], shape)], stat, axes=axes, keepdims=1)
    # BVLC mvn_layer.cpp adds eps after the square root
    std = b.node("Add", [b.node("Sqrt", [var], stat), b.const("eps", float(p.get("eps", 1e-9)))], stat)
    return [b.node("Div", [centred, std], shape, out=0)]
