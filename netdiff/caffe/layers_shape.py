"""Shape layers: Concat, Slice, Flatten, Reshape, Permute, Crop, Tile, Softmax, ArgMax, Reorg, ShuffleChannel."""

from __future__ import annotations

import math

import numpy as np

from netdiff.caffe._builder import Builder, canon_axis, translates
from netdiff.caffe.net import Layer
from netdiff.errors import ModelError


def _err(layer: Layer, text: str) -> ModelError:
    return ModelError(f"layer {layer.name!r} ({layer.type}): {text}")


@translates("Concat")
def concat(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("concat_param")
    shape = b.shapes[xs[0]]
    axis = canon_axis(int(p.get("axis", p.get("concat_dim", 1))), len(shape), layer)
    total = 0
    for x in xs:
        s = b.shapes[x]
        if len(s) != len(shape) or any(d != e for i, (d, e) in enumerate(zip(s, shape)) if i != axis):
            raise _err(layer, f"bottom shapes {[list(b.shapes[y]) for y in xs]} differ outside axis {axis}")
        total += s[axis]
    if len(xs) == 1:
        return [b.identity(xs[0], 0)]
    return [b.node("Concat", xs, (*shape[:axis], total, *shape[axis + 1:]), out=0, axis=axis)]


@translates("Slice")
def slice_(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("slice_param")
    shape = b.shapes[xs[0]]
    axis = canon_axis(int(p.get("axis", p.get("slice_dim", 1))), len(shape), layer)
    points = [int(v) for v in p.getall("slice_point")]
    tops, dim = len(layer.tops), shape[axis]
    if points:
        if len(points) != tops - 1 or points != sorted(points) or points[0] <= 0 or points[-1] >= dim:
            raise _err(layer, f"slice_point {points} must be {tops - 1} increasing values inside (0, {dim})")
        sizes = [e - s for s, e in zip([0, *points], [*points, dim])]
    else:
        if dim % tops:
            raise _err(layer, f"axis {axis} size {dim} does not split into {tops} equal parts")
        sizes = [dim // tops] * tops
    if tops == 1:
        return [b.identity(xs[0], 0)]
    shapes = [(*shape[:axis], s, *shape[axis + 1:]) for s in sizes]
    return b.node("Split", [xs[0], b.ints("split", sizes)], shapes, out=list(range(tops)), axis=axis)


@translates("Flatten")
def flatten(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("flatten_param")
    shape = b.shapes[xs[0]]
    start = canon_axis(int(p.get("axis", 1)), len(shape), layer)
    end = canon_axis(int(p.get("end_axis", -1)), len(shape), layer, "end_axis")
    out = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
    return [b.reshape(xs[0], out, out=0)]


def caffe_reshape(shape: tuple[int, ...], dims: list[int], axis: int, num_axes: int, layer: Layer) -> tuple[int, ...]:
    """Caffe's Reshape rule: 0 copies the bottom dim, one -1 is inferred, axis/num_axes pick the span."""
    rank = len(shape)
    start = axis + rank + 1 if axis < 0 else axis
    if not 0 <= start <= rank:
        raise _err(layer, f"axis {axis} is out of range for a {rank}-D bottom")
    end = rank if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > rank:
        raise _err(layer, f"num_axes {num_axes} from axis {start} exceeds the {rank}-D bottom")
    out = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise _err(layer, f"dim {i} is 0 but the bottom has no axis {start + i} to copy")
            out.append(shape[start + i])
        elif d == -1 or d > 0:
            out.append(d)
        else:
            raise _err(layer, f"invalid reshape dim {d}")
    full = [*shape[:start], *out, *shape[end:]]
    if full.count(-1) > 1:
        raise _err(layer, "more than one -1 in the reshape dims")
    count = math.prod(shape)
    if -1 in full:
        known = math.prod(d for d in full if d != -1)
        if known == 0 or count % known:
            raise _err(layer, f"cannot infer -1: {count} elements do not fit {full}")
        full[full.index(-1)] = count // known
    if math.prod(full) != count:
        raise _err(layer, f"reshape {list(shape)} -> {full} changes the element count")
    return tuple(full)


@translates("Reshape")
def reshape(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    p = layer.param("reshape_param")
    dims = [int(d) for d in p.sub("shape").getall("dim")]
    out = caffe_reshape(b.shapes[xs[0]], dims, int(p.get("axis", 0)), int(p.get("num_axes", -1)), layer)
    return [b.reshape(xs[0], out, out=0)]


@translates("Permute")
def permute(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    shape = b.shapes[xs[0]]
    order = [canon_axis(int(o), len(shape), layer, "order") for o in layer.param("permute_param").getall("order")]
    if len(set(order)) != len(order):
        raise _err(layer, f"order {order} repeats an axis")
    order += [i for i in range(len(shape)) if i not in order]
    return [b.node("Transpose", [xs[0]], tuple(shape[i] for i in order), out=0, perm=order)]


@translates("Crop")
def crop(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    if len(xs) != 2:
        raise _err(layer, "needs two bottoms (data and reference shape)")
    shape, ref = b.shapes[xs[0]], b.shapes[xs[1]]
    p = layer.param("crop_param")
    axis = canon_axis(int(p.get("axis", 2)), len(shape), layer)
    offsets = [int(o) for o in p.getall("offset")]
    n = len(shape) - axis
    if len(offsets) not in (0, 1, n):
        raise _err(layer, f"{len(offsets)} offsets for {n} cropped axes")
    offsets = offsets * n if len(offsets) == 1 else (offsets or [0] * n)
    out = list(shape)
    for i, off in enumerate(offsets):
        a = axis + i
        if off + ref[a] > shape[a]:
            raise _err(layer, f"crop of {ref[a]} at offset {off} exceeds axis {a} size {shape[a]}")
        out[a] = ref[a]
    axes = list(range(axis, len(shape)))
    inputs = [xs[0], b.ints("starts", offsets), b.ints("ends", [o + ref[a] for o, a in zip(offsets, axes)]),
              b.ints("axes", axes)]
    return [b.node("Slice", inputs, tuple(out), out=0)]


@translates("Tile")
def tile(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    shape = b.shapes[xs[0]]
    p = layer.param("tile_param")
    axis = canon_axis(int(p.get("axis", 1)), len(shape), layer)
    tiles = int(p.get("tiles", 0))
    if tiles <= 0:
        raise _err(layer, "tiles must be positive")
    reps = [tiles if i == axis else 1 for i in range(len(shape))]
    out = tuple(d * r for d, r in zip(shape, reps))
    return [b.node("Tile", [xs[0], b.ints("repeats", reps)], out, out=0)]


@translates("Softmax")
def softmax(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    shape = b.shapes[xs[0]]
    axis = canon_axis(int(layer.param("softmax_param").get("axis", 1)), len(shape), layer)
    return [b.node("Softmax", [xs[0]], shape, out=0, axis=axis)]


@translates("ArgMax")
def argmax(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    """Caffe ArgMax: indices as float; ties go to the larger index (pairs sorted with std::greater)."""
    x = xs[0]
    shape = b.shapes[x]
    p = layer.param("argmax_param")
    top_k, out_max = int(p.get("top_k", 1)), bool(p.get("out_max_val", False))
    has_axis = p.get("axis") is not None
    if has_axis:
        axis = canon_axis(int(p.get("axis")), len(shape), layer)
        src, length = x, shape[axis]
    else:
        axis, length = 1, math.prod(shape[1:])
        src = b.reshape(x, (shape[0], length))
    if not 1 <= top_k <= length:
        raise _err(layer, f"top_k {top_k} must be between 1 and {length}")
    src_shape = b.shapes[src]
    kshape = tuple(top_k if i == axis else d for i, d in enumerate(src_shape))
    rev = b.node("Slice", [src, b.ints("starts", [-1]), b.ints("ends", [-(2 ** 62)]), b.ints("axes", [axis]),
                           b.ints("steps", [-1])], src_shape)
    values, rindex = b.node("TopK", [rev, b.ints("k", [top_k])], [kshape, kshape], axis=axis, largest=1, sorted=1)
    index = b.node("Sub", [b.const("last", np.int64(length - 1), np.int64), rindex], kshape)
    findex = b.node("Cast", [index], kshape, to=1)
    if has_axis:
        result = values if out_max else findex
        return [b.identity(result, 0)]
    rank = max(len(shape), 3)
    out_shape = [1] * rank
    out_shape[0], out_shape[1], out_shape[2] = shape[0], 2 if out_max else 1, top_k
    if out_max:
        both = b.node("Concat", [findex, values], (shape[0], 2 * top_k), axis=1)
        return [b.reshape(both, out_shape, out=0)]
    return [b.reshape(findex, out_shape, out=0)]


@translates("Reorg")
def reorg(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    """YOLOv2 reorg as darknet's reorg_cpu(forward=0) computes it (not ONNX SpaceToDepth)."""
    shape = b.shapes[xs[0]]
    if len(shape) != 4:
        raise _err(layer, f"needs a 4-D bottom, got {list(shape)}")
    n, c, h, w = shape
    s = int(layer.param("reorg_param").get("stride", 2))
    if s <= 0 or c % (s * s) or h % s or w % s:
        raise _err(layer, f"stride {s} does not divide channels {c} by stride^2 and H, W {h}x{w}")
    a = b.reshape(xs[0], (n, c // (s * s), h, s, w, s))
    t = b.node("Transpose", [a], (n, s, s, c // (s * s), h, w), perm=[0, 3, 5, 1, 2, 4])
    return [b.reshape(t, (n, c * s * s, h // s, w // s), out=0)]


@translates("ShuffleChannel")
def shuffle_channel(b: Builder, layer: Layer, xs: list[str]) -> list[str]:
    shape = b.shapes[xs[0]]
    g = int(layer.param("shuffle_channel_param").get("group", 1))
    if len(shape) < 2 or g <= 0 or shape[1] % g:
        raise _err(layer, f"group {g} must divide the channels of {list(shape)}")
    n, c, rest = shape[0], shape[1], tuple(shape[2:])
    a = b.reshape(xs[0], (n, g, c // g, *rest))
    perm = [0, 2, 1, *range(3, 3 + len(rest))]
    t = b.node("Transpose", [a], (n, c // g, g, *rest), perm=perm)
    return [b.reshape(t, shape, out=0)]
