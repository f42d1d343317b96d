"""SSD PriorBox: depends only on shapes, so it is computed here and emitted as a constant."""

from __future__ import annotations

import math

import numpy as np

from netdiff.caffe._builder import Builder, translates
from netdiff.caffe.net import Layer
from netdiff.errors import ModelError


def _err(layer: Layer, text: str) -> ModelError:
    return ModelError(f"layer {layer.name!r} (PriorBox): {text}")


def prior_boxes(layer: Layer, feature: tuple[int, ...], image: tuple[int, ...]) -> np.ndarray:
    """weiliu89 prior_box_layer.cpp: (1, 2, H*W*num_priors*4) boxes then variances."""
    p = layer.param("prior_box_param")
    min_sizes = [float(v) for v in p.getall("min_size")]
    max_sizes = [float(v) for v in p.getall("max_size")]
    if not min_sizes or any(m <= 0 for m in min_sizes):
        raise _err(layer, "needs positive min_size values")
    if max_sizes and (len(max_sizes) != len(min_sizes) or any(M <= m for m, M in zip(min_sizes, max_sizes))):
        raise _err(layer, "max_size needs one value greater than each min_size")
    flip = bool(p.get("flip", True))
    ratios = [1.0]
    for ar in (float(v) for v in p.getall("aspect_ratio")):
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if flip:
            ratios.append(1.0 / ar)
    variances = [float(v) for v in p.getall("variance")] or [0.1]
    if len(variances) not in (1, 4):
        raise _err(layer, f"variance needs 1 or 4 values, got {len(variances)}")
    lh, lw = feature[2], feature[3]
    if p.get("img_h") is not None or p.get("img_w") is not None:
        img_h, img_w = int(p.get("img_h", 0)), int(p.get("img_w", 0))
    elif p.get("img_size") is not None:
        img_h = img_w = int(p.get("img_size"))
    else:
        img_h, img_w = image[2], image[3]
    if p.get("step_h") is not None or p.get("step_w") is not None:
        step_h, step_w = float(p.get("step_h", 0)), float(p.get("step_w", 0))
    elif p.get("step") is not None:
        step_h = step_w = float(p.get("step"))
    else:
        step_h, step_w = float(np.float32(img_h) / lh), float(np.float32(img_w) / lw)
    offset = float(p.get("offset", 0.5))
    boxes = []
    for h in range(lh):
        for w in range(lw):
            cx, cy = float(np.float32((w + offset) * step_w)), float(np.float32((h + offset) * step_h))
            for s, min_size in enumerate(min_sizes):
                size = int(min_size)  # weiliu89 truncates sizes to int
                sizes = [(size, size)]
                if max_sizes:
                    side = math.sqrt(size * int(max_sizes[s]))
                    sizes.append((side, side))
                sizes += [(size * math.sqrt(ar), size / math.sqrt(ar)) for ar in ratios if abs(ar - 1.0) >= 1e-6]
                for bw, bh in sizes:
                    boxes.append([(cx - bw / 2.0) / img_w, (cy - bh / 2.0) / img_h,
                                  (cx + bw / 2.0) / img_w, (cy + bh / 2.0) / img_h])
    data = np.asarray(boxes, dtype=np.float32).reshape(-1)
    if bool(p.get("clip", False)):
        data = np.clip(data, 0.0, 1.0)
    var = np.tile(np.asarray(variances, np.float32), data.size // 4) if len(variances) == 4 else \
        np.full(data.size, variances[0], np.float32)
    return np.stack([data, var]).reshape(1, 2, data.size)


@translates("PriorBox")
def prior_box(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    if len(xs) != 2:
        raise _err(layer, "needs two bottoms (feature map and image)")
    feature, image = b.shapes[xs[0]], b.shapes[xs[1]]
    if len(feature) != 4 or len(image) != 4:
        raise _err(layer, f"needs 4-D bottoms, got {list(feature)} and {list(image)}")
    boxes = prior_boxes(layer, feature, image) if not b.shapes_only else \
        np.zeros((1, 2, feature[2] * feature[3] * 4 * _count(layer)), np.float32)
    return [b.node("Identity", [b.const("priors", boxes)], boxes.shape, out=0)]


def _count(layer: Layer) -> int:
    p = layer.param("prior_box_param")
    ratios = [1.0]
    for ar in (float(v) for v in p.getall("aspect_ratio")):
        if not any(abs(ar - r) < 1e-6 for r in ratios):
            ratios += [ar, 1.0 / ar] if bool(p.get("flip", True)) else [ar]
    n_min = len(p.getall("min_size"))
    return n_min * len(ratios) + (n_min if p.getall("max_size") else 0)
