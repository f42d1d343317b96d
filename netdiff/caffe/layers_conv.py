"""Convolution, Deconvolution, InnerProduct, Pooling and LRN with Caffe's shape rules."""

from __future__ import annotations

import math

import numpy as np

from netdiff.caffe._builder import Builder, canon_axis, translates
from netdiff.caffe.net import Layer
from netdiff.caffe.prototxt import Message
from netdiff.errors import ModelError, UnsupportedOpError


def _err(layer: Layer, text: str) -> ModelError:
    return ModelError(f"layer {layer.name!r} ({layer.type}): {text}")


def spatial(p: Message, name: str, n: int, default: int | None, layer: Layer, repeated: bool = True) -> list[int]:
    """A per-spatial-dim parameter: ``<name>_h``/``<name>_w`` override, else the (repeated) ``<name>``."""
    h, w = p.get(f"{name}_h"), p.get(f"{name}_w")
    if h is not None or w is not None:
        if n != 2:
            raise _err(layer, f"{name}_h/{name}_w need 2 spatial dims, the bottom has {n}")
        if h is None or w is None:
            if default is None:
                raise _err(layer, f"{name}_h and {name}_w must be given together")
        return [int(default if h is None else h), int(default if w is None else w)]
    values = [int(v) for v in (p.getall(name) if repeated else ([p.get(name)] if p.get(name) is not None else []))]
    if not values:
        if default is None:
            raise _err(layer, f"{name} is required")
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise _err(layer, f"{len(values)} {name} values for {n} spatial dims")
    return values


def _bottom(b: Builder, layer: Layer, x: str, min_rank: int = 3) -> tuple[int, ...]:
    shape = b.shapes[x]
    if len(shape) < min_rank:
        raise _err(layer, f"bottom shape {list(shape)} needs at least {min_rank} dims")
    return shape


def _conv_geometry(layer: Layer, p: Message, n: int) -> tuple[list[int], list[int], list[int], list[int]]:
    if int(p.get("axis", 1)) != 1:
        raise UnsupportedOpError(f"layer {layer.name!r} ({layer.type}): axis {p.get('axis')} is not supported "
                                 "(only the channel axis 1)")
    kernel = spatial(p, "kernel", n, None, layer) if p.get("kernel_h") is not None else \
        spatial(p, "kernel_size", n, None, layer)
    pad = spatial(p, "pad", n, 0, layer)
    stride = spatial(p, "stride", n, 1, layer)
    dilation = spatial(p, "dilation", n, 1, layer)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise _err(layer, f"kernel {kernel}, stride {stride} and dilation {dilation} must be positive")
    return kernel, pad, stride, dilation


@translates("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution", "Deconvolution")
def convolution(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = _bottom(b, layer, x)
    p = layer.param("convolution_param")
    n = len(shape) - 2
    kernel, pad, stride, dilation = _conv_geometry(layer, p, n)
    channels = shape[1]
    num_output = int(p.get("num_output", 0))
    if num_output <= 0:
        raise _err(layer, "num_output must be positive")
    group = channels if layer.type in ("ConvolutionDepthwise", "DepthwiseConvolution") else int(p.get("group", 1))
    if group <= 0 or channels % group or num_output % group:
        raise _err(layer, f"group {group} must divide both input channels {channels} and num_output {num_output}")
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    deconv = layer.type == "Deconvolution"
    if deconv:
        out_sp = [s * (i - 1) + e - 2 * q for i, s, e, q in zip(shape[2:], stride, extent, pad)]
        wshape = (channels, num_output // group, *kernel)
        op = "ConvTranspose"
    else:
        out_sp = [(i + 2 * q - e) // s + 1 for i, q, e, s in zip(shape[2:], pad, extent, stride)]
        wshape = (num_output, channels // group, *kernel)
        op = "Conv"
    if any(o <= 0 for o in out_sp):
        raise _err(layer, f"output size {out_sp} is not positive for bottom {list(shape)}")
    inputs = [x, b.const("W", b.weight(0, wshape, "filters"))]
    if bool(p.get("bias_term", True)):
        inputs.append(b.const("B", b.weight(1, (num_output,), "bias")))
    out = b.node(op, inputs, (shape[0], num_output, *out_sp), out=0, kernel_shape=kernel, pads=pad + pad,
                 strides=stride, dilations=dilation, group=group)
    return [out]


@translates("InnerProduct")
def inner_product(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = b.shapes[x]
    p = layer.param("inner_product_param")
    axis = canon_axis(int(p.get("axis", 1)), len(shape), layer)
    num_output = int(p.get("num_output", 0))
    if num_output <= 0:
        raise _err(layer, "num_output must be positive")
    m, k = math.prod(shape[:axis]), math.prod(shape[axis:])
    transpose = bool(p.get("transpose", False))
    w = b.weight(0, (k, num_output) if transpose else (num_output, k), "weights")
    flat = b.node("Flatten", [x], (m, k), axis=axis) if shape != (m, k) else x
    inputs = [flat, b.const("W", w)]
    if bool(p.get("bias_term", True)):
        inputs.append(b.const("B", b.weight(1, (num_output,), "bias")))
    out_shape = (*shape[:axis], num_output)
    if out_shape == (m, num_output):
        return [b.node("Gemm", inputs, out_shape, out=0, transB=0 if transpose else 1)]
    gemm = b.node("Gemm", inputs, (m, num_output), transB=0 if transpose else 1)
    return [b.reshape(gemm, out_shape, out=0)]


def caffe_pool_size(size: int, kernel: int, pad: int, stride: int, ceil: bool) -> int:
    """Caffe's pooled size: ceil (or floor) division, then the last window must start inside."""
    num = size + 2 * pad - kernel
    out = (-(-num // stride) if ceil else num // stride) + 1
    return out


@translates("Pooling")
def pooling(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = _bottom(b, layer, x, 4)
    if len(shape) != 4:
        raise _err(layer, f"Caffe pooling needs a 4-D bottom, got {list(shape)}")
    p = layer.param("pooling_param")
    method = str(p.get("pool", "MAX")).upper()
    method = {"0": "MAX", "1": "AVE", "2": "STOCHASTIC"}.get(method, method)
    if method not in ("MAX", "AVE"):
        raise UnsupportedOpError(f"layer {layer.name!r} (Pooling): pool method {method} is not supported "
                                 "(MAX, AVE)")
    if len(layer.tops) > 1 and method != "MAX":
        raise _err(layer, "a second top (the argmax mask) needs pool: MAX")
    n, c, h, w = shape
    if bool(p.get("global_pooling", False)):
        op = "GlobalMaxPool" if method == "MAX" else "GlobalAveragePool"
        if len(layer.tops) > 1:
            return _max_with_mask(b, x, shape, [h, w], [0, 0], [0, 0], [1, 1], (n, c, 1, 1))
        return [b.node(op, [x], (n, c, 1, 1), out=0)]
    kernel = spatial(p, "kernel", 2, None, layer, repeated=False) if p.get("kernel_h") is not None else \
        spatial(p, "kernel_size", 2, None, layer, repeated=False)
    pad = spatial(p, "pad", 2, 0, layer, repeated=False)
    stride = spatial(p, "stride", 2, 1, layer, repeated=False)
    if any(q >= k for q, k in zip(pad, kernel)):
        raise _err(layer, f"pad {pad} must be smaller than kernel {kernel}")
    ceil = str(p.get("round_mode", "CEIL")).upper() not in ("FLOOR", "1") and p.get("ceil_mode", True) is not False
    out = [caffe_pool_size(i, k, q, s, ceil) for i, k, q, s in zip((h, w), kernel, pad, stride)]
    if pad[0] or pad[1]:  # Caffe: the last window must start inside the image or the left padding
        out = [o - 1 if (o - 1) * s >= i + q else o for o, s, i, q in zip(out, stride, (h, w), pad)]
    if any(o <= 0 for o in out):
        raise _err(layer, f"pooled size {out} is not positive for bottom {list(shape)}")
    extra = [max(0, (o - 1) * s + k - (i + 2 * q)) for o, s, k, i, q in zip(out, stride, kernel, (h, w), pad)]
    out_shape = (n, c, *out)
    if method == "MAX":
        pads = [pad[0], pad[1], pad[0] + extra[0], pad[1] + extra[1]]
        if len(layer.tops) > 1:
            return _max_with_mask(b, x, shape, kernel, pads[:2], pads[2:], stride, out_shape)
        return [b.node("MaxPool", [x], out_shape, out=0, kernel_shape=kernel, pads=pads, strides=stride)]
    if not any(extra):  # every window lies within [-pad, size + pad): divisor is always k*k
        return [b.node("AveragePool", [x], out_shape, out=0, kernel_shape=kernel, pads=pad + pad, strides=stride,
                       count_include_pad=1)]
    src = x
    if pad[0] or pad[1]:  # pad explicitly so the padding counts; the ceil overhang beyond it does not
        padded = (n, c, h + 2 * pad[0], w + 2 * pad[1])
        src = b.node("Pad", [x, b.ints("pads", [0, 0, pad[0], pad[1], 0, 0, pad[0], pad[1]])], padded,
                     mode="constant")
    return [b.node("AveragePool", [src], out_shape, out=0, kernel_shape=kernel, pads=[0, 0, *extra],
                   strides=stride, count_include_pad=0)]


def _max_with_mask(b: Builder, x: str, shape: tuple[int, ...], kernel: list[int], begin: list[int],
                   end: list[int], stride: list[int], out_shape: tuple[int, ...]) -> list[str]:
    """MaxPool with Caffe's second top: the argmax as a float index h*W + w within each plane."""
    n, c, h, w = shape
    values, indices = b.node("MaxPool", [x], [out_shape, out_shape], out=None, kernel_shape=kernel,
                             pads=begin + end, strides=stride)
    top0 = b.identity(values, 0)
    base = (np.arange(n * c, dtype=np.int64) * h * w).reshape(n, c, 1, 1)
    local = b.node("Sub", [indices, b.const("plane_offset", base, np.int64)], out_shape)
    top1 = b.node("Cast", [local], out_shape, out=1, to=1)
    return [top0, top1]


@translates("LRN")
def lrn(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    x = xs[0]
    shape = _bottom(b, layer, x, 4)
    p = layer.param("lrn_param")
    size = int(p.get("local_size", 5))
    alpha, beta, k = float(p.get("alpha", 1.0)), float(p.get("beta", 0.75)), float(p.get("k", 1.0))
    if size % 2 == 0:
        raise _err(layer, f"local_size must be odd, got {size}")
    region = str(p.get("norm_region", "ACROSS_CHANNELS")).upper()
    if region in ("ACROSS_CHANNELS", "0"):
        return [b.node("LRN", [x], shape, out=0, size=size, alpha=alpha, beta=beta, bias=k)]
    if region not in ("WITHIN_CHANNEL", "1"):
        raise _err(layer, f"unknown norm_region {region}")
    # Caffe: x * (1 + alpha * AVE_pool_{size x size, pad (size-1)/2}(x^2)) ^ -beta
    pad = (size - 1) // 2
    sq = b.node("Mul", [x, x], shape)
    avg = b.node("AveragePool", [sq], shape, kernel_shape=[size, size], pads=[pad] * 4, strides=[1, 1],
                 count_include_pad=1)
    scaled = b.node("Mul", [avg, b.const("alpha", alpha)], shape)
    base = b.node("Add", [scaled, b.const("one", 1.0)], shape)
    powed = b.node("Pow", [base, b.const("neg_beta", -beta)], shape)
    return [b.node("Mul", [x, powed], shape, out=0)]
