"""Element-wise Caffe layers: activations, Power/Exp/Log, Eltwise, PReLU, Dropout, Split."""

from __future__ import annotations

import math

import numpy as np

from netdiff.caffe._builder import Builder, translates
from netdiff.caffe.net import Layer
from netdiff.errors import ModelError


def _unary(b: Builder, x: str, op: str, **attrs) -> str:
    return b.node(op, [x], b.shapes[x], out=0, **attrs)


def chain(b: Builder, x: str, steps: list[tuple[str, list[str]]]) -> str:
    """Apply ``(op, extra inputs)`` steps in order; the last writes top 0 (Identity when empty)."""
    if not steps:
        return b.identity(x, 0)
    for i, (op, extra) in enumerate(steps):
        x = b.node(op, [x, *extra], b.shapes[x], out=0 if i == len(steps) - 1 else None)
    return x


@translates("ReLU")
def relu(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    slope = float(layer.param("relu_param").get("negative_slope", 0.0))
    if slope != 0.0:
        return [_unary(b, xs[0], "LeakyRelu", alpha=slope)]
    return [_unary(b, xs[0], "Relu")]


@translates("ReLU6")
def relu6(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [b.node("Clip", [xs[0], b.const("min", 0.0), b.const("max", 6.0)], b.shapes[xs[0]], out=0)]


@translates("Clip")
def clip(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("clip_param")
    lo, hi = float(p.get("min", -math.inf)), float(p.get("max", math.inf))
    return [b.node("Clip", [xs[0], b.const("min", lo), b.const("max", hi)], b.shapes[xs[0]], out=0)]


@translates("Sigmoid")
def sigmoid(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [_unary(b, xs[0], "Sigmoid")]


@translates("TanH")
def tanh(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [_unary(b, xs[0], "Tanh")]


@translates("AbsVal")
def absval(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [_unary(b, xs[0], "Abs")]


@translates("BNLL")
def bnll(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [_unary(b, xs[0], "Softplus")]


@translates("ELU")
def elu(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [_unary(b, xs[0], "Elu", alpha=float(layer.param("elu_param").get("alpha", 1.0)))]


@translates("Swish")
def swish(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    beta = float(layer.param("swish_param").get("beta", 1.0))
    scaled = x if beta == 1.0 else b.node("Mul", [x, b.const("beta", beta)], b.shapes[x])
    s = b.node("Sigmoid", [scaled], b.shapes[x])
    return [b.node("Mul", [x, s], b.shapes[x], out=0)]


@translates("Threshold")
def threshold(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    t = float(layer.param("threshold_param").get("threshold", 0.0))
    gt = b.node("Greater", [xs[0], b.const("threshold", t)], b.shapes[xs[0]])
    return [b.node("Cast", [gt], b.shapes[xs[0]], out=0, to=1)]


@translates("Power")
def power(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("power_param")
    pw, scale, shift = float(p.get("power", 1.0)), float(p.get("scale", 1.0)), float(p.get("shift", 0.0))
    x = xs[0]
    if pw == 0.0 or scale == 0.0:  # Caffe fills the constant (shift^power, or 1 for power 0)
        value = 1.0 if pw == 0.0 else float(np.float32(shift) ** np.float32(pw))
        from onnx import helper

        shape = b.shapes[x]
        return [b.node("ConstantOfShape", [b.ints("shape", shape)], shape, out=0,
                       value=helper.make_tensor("value", 1, [1], [value]))]
    steps = []
    if scale != 1.0:
        steps.append(("Mul", [b.const("scale", scale)]))
    if shift != 0.0:
        steps.append(("Add", [b.const("shift", shift)]))
    if pw != 1.0:
        steps.append(("Pow", [b.const("power", pw)]))
    return [chain(b, x, steps)]


def _base_log(base: float, layer: Layer) -> float:
    if base == -1.0:
        return 1.0
    if base <= 0.0:
        raise ModelError(f"layer {layer.name!r} ({layer.type}): base must be -1 (e) or positive, got {base}")
    return math.log(base)


@translates("Exp")
def exp(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("exp_param")
    base, scale, shift = float(p.get("base", -1.0)), float(p.get("scale", 1.0)), float(p.get("shift", 0.0))
    log_base = _base_log(base, layer)
    inner, outer = log_base * scale, (1.0 if shift == 0.0 else math.exp(log_base * shift))
    steps = [] if inner == 1.0 else [("Mul", [b.const("inner_scale", inner)])]
    steps.append(("Exp", []))
    if outer != 1.0:
        steps.append(("Mul", [b.const("outer_scale", outer)]))
    return [chain(b, xs[0], steps)]


@translates("Log")
def log(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("log_param")
    base, scale, shift = float(p.get("base", -1.0)), float(p.get("scale", 1.0)), float(p.get("shift", 0.0))
    base_scale = 1.0 if base == -1.0 else 1.0 / _base_log(base, layer)
    steps = []
    if scale != 1.0:
        steps.append(("Mul", [b.const("scale", scale)]))
    if shift != 0.0:
        steps.append(("Add", [b.const("shift", shift)]))
    steps.append(("Log", []))
    if base_scale != 1.0:
        steps.append(("Mul", [b.const("base_scale", base_scale)]))
    return [chain(b, xs[0], steps)]


@translates("Dropout")
def dropout(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("dropout_param")
    if p.get("scale_train", True) is False:  # fork extension: scale by (1 - ratio) at test time
        return [chain(b, xs[0], [("Mul", [b.const("keep", 1.0 - float(p.get("dropout_ratio", 0.5)))])])]
    return [b.identity(xs[0], 0)]


@translates("Split")
def split(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    return [b.identity(xs[0], i) for i in range(len(layer.tops))]


@translates("Eltwise")
def eltwise(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("eltwise_param")
    op = str(p.get("operation", "SUM")).upper()
    op = {"0": "PROD", "1": "SUM", "2": "MAX"}.get(op, op)
    shape = b.shapes[xs[0]]
    bad = [x for x in xs if b.shapes[x] != shape]
    if bad:
        raise ModelError(f"layer {layer.name!r} (Eltwise): bottoms must have equal shapes, got "
                         + ", ".join(str(list(b.shapes[x])) for x in xs))
    coeffs = [float(c) for c in p.getall("coeff")]
    if coeffs and op != "SUM":
        raise ModelError(f"layer {layer.name!r} (Eltwise): coeff is only allowed with operation SUM")
    if coeffs and len(coeffs) != len(xs):
        raise ModelError(f"layer {layer.name!r} (Eltwise): {len(coeffs)} coeff values for {len(xs)} bottoms")
    if op == "PROD":
        acc = xs[0]
        for i, x in enumerate(xs[1:], start=1):
            acc = b.node("Mul", [acc, x], shape, out=0 if i == len(xs) - 1 else None)
        return [acc if len(xs) > 1 else b.identity(acc, 0)]
    if op == "MAX":
        return [b.node("Max", xs, shape, out=0)]
    if op != "SUM":
        raise ModelError(f"layer {layer.name!r} (Eltwise): unknown operation {op}")
    terms = [x if not coeffs or c == 1.0 else b.node("Mul", [x, b.const(f"coeff{i}", c)], shape)
             for i, (x, c) in enumerate(zip(xs, coeffs or [1.0] * len(xs)))]
    return [b.node("Sum", terms, shape, out=0)]


@translates("PReLU")
def prelu(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    shared = bool(layer.param("prelu_param").get("channel_shared", False))
    if len(shape) < 2 and not shared:
        raise ModelError(f"layer {layer.name!r} (PReLU): bottom {list(shape)} has no channel axis")
    channels = 1 if shared else shape[1]
    slope = b.weight(0, (channels,), "slopes")
    slope = slope.reshape((channels,) + (1,) * max(len(shape) - 2, 0)) if not shared else slope
    return [b.node("PRelu", [x, b.const("slope", slope)], shape, out=0)]
