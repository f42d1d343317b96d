"""Resizing fork layers: Interp (PSPNet/DeepLab bilinear) and Upsample (YOLO nearest, SegNet/NNIE unpool)."""

from __future__ import annotations

import numpy as np

from netdiff.caffe._builder import Builder, translates
from netdiff.caffe.net import Layer
from netdiff.errors import ModelError


def _err(layer: Layer, text: str) -> ModelError:
    return ModelError(f"layer {layer.name!r} ({layer.type}): {text}")


def interp_size(layer: Layer, h: int, w: int, ref: tuple[int, ...] | None) -> tuple[int, int, int, int]:
    """Interp output size and the crop (pad_beg, pad_end <= 0): returns (h_out, w_out, beg, end)."""
    p = layer.param("interp_param")
    beg, end = int(p.get("pad_beg", 0)), int(p.get("pad_end", 0))
    if beg > 0 or end > 0:
        raise _err(layer, "only non-positive pad_beg/pad_end (cropping) are supported, as in Caffe")
    he, we = h + beg + end, w + beg + end
    if he <= 0 or we <= 0:
        raise _err(layer, f"cropping by {beg}/{end} leaves nothing of {h}x{w}")
    shrink, zoom = p.get("shrink_factor"), p.get("zoom_factor")
    if ref is not None:
        return int(ref[2]), int(ref[3]), beg, end
    if shrink is not None and zoom is None:
        s = int(shrink)
        return (he - 1) // s + 1, (we - 1) // s + 1, beg, end
    if zoom is not None and shrink is None:
        z = int(zoom)
        return he + (he - 1) * (z - 1), we + (we - 1) * (z - 1), beg, end
    if p.get("height") is not None and p.get("width") is not None:
        return int(p.get("height")), int(p.get("width")), beg, end
    if shrink is not None and zoom is not None:
        s, z = int(shrink), int(zoom)
        hs, ws = (he - 1) // s + 1, (we - 1) // s + 1
        return hs + (hs - 1) * (z - 1), ws + (ws - 1) * (z - 1), beg, end
    raise _err(layer, "needs zoom_factor, shrink_factor, height+width, or a second bottom")


@translates("Interp")
def interp(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    """Bilinear resize with align_corners over the (cropped) input, as Caffe's caffe_cpu_interp2."""
    x = xs[0]
    shape = b.shapes[x]
    if len(shape) != 4:
        raise _err(layer, f"needs a 4-D bottom, got {list(shape)}")
    n, c, h, w = shape
    ho, wo, beg, end = interp_size(layer, h, w, b.shapes[xs[1]] if len(xs) > 1 else None)
    if ho <= 0 or wo <= 0:
        raise _err(layer, f"output size {ho}x{wo} is not positive")
    src = x
    if beg or end:
        src = b.node("Slice", [x, b.ints("starts", [-beg, -beg]), b.ints("ends", [h + end, w + end]),
                               b.ints("axes", [2, 3])], (n, c, h + beg + end, w + beg + end))
    return [b.node("Resize", [src, "", "", b.ints("sizes", [n, c, ho, wo])], (n, c, ho, wo), out=0, mode="linear",
                   coordinate_transformation_mode="align_corners")]


@translates("Upsample")
def upsample(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    """One bottom: nearest by an integer factor (YOLO/darknet). Two bottoms: SegNet max-unpool (NNIE)."""
    x = xs[0]
    shape = b.shapes[x]
    if len(shape) != 4:
        raise _err(layer, f"needs a 4-D bottom, got {list(shape)}")
    n, c, h, w = shape
    p = layer.param("upsample_param")
    scale = p.get("scale", p.get("stride"))
    sh = int(p.get("scale_h", scale if scale is not None else 2))
    sw = int(p.get("scale_w", scale if scale is not None else 2))
    if len(xs) == 1:
        if sh <= 0 or sw <= 0:
            raise _err(layer, f"scale {sh}x{sw} must be positive")
        out = (n, c, h * sh, w * sw)
        return [b.node("Resize", [x, "", "", b.ints("sizes", out)], out, out=0, mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    mask_shape = b.shapes[xs[1]]
    if mask_shape != shape:
        raise _err(layer, f"mask shape {list(mask_shape)} differs from the data shape {list(shape)}")
    if p.get("upsample_h") is not None and p.get("upsample_w") is not None:
        ho, wo = int(p.get("upsample_h")), int(p.get("upsample_w"))
    else:
        ho = h * sh - (1 if p.get("pad_out_h", False) else 0)
        wo = w * sw - (1 if p.get("pad_out_w", False) else 0)
    out = (n, c, ho, wo)
    # SegNet: top[mask[i]] = bottom[i] within each (n, c) plane; ONNX MaxUnpool indexes all of N*C*H*W
    local = b.node("Cast", [xs[1]], shape, to=7)
    base = (np.arange(n * c, dtype=np.int64) * ho * wo).reshape(n, c, 1, 1)
    flat = b.node("Add", [local, b.const("plane_offset", base, np.int64)], shape)
    return [b.node("MaxUnpool", [x, flat, b.ints("output_shape", out)], out, out=0, kernel_shape=[1, 1],
                   strides=[1, 1])]
