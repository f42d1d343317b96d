"""Structural rules: only some channels diverge, a spatial shift or size difference, storage layout."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidate_pairs, cosine, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.metrics import channel_cosines
from netdiff.types import Finding, LayerResult

#: A channel counts as good above this cosine.
GOOD = 0.99
MAX_CHANNELS = 4096


@register_rule("channel-mismatch")
def channel_mismatch(context: Context) -> Iterator[Finding]:
    """Only some channels of an origin diverge: permuted output channels or a per-channel range outlier."""

    def has_channels(layer: LayerResult) -> bool:
        return layer.shape is not None and len(layer.shape) >= 3 and 2 <= layer.shape[1] <= MAX_CHANNELS

    for layer, ref, tgt in candidate_pairs(context, has_channels):
        channels = layer.shape[1]
        found = channel_evidence(ref, tgt)
        if found is None:
            continue
        context.claim(layer.name)
        bad = found["bad_channels"]
        if found.get("permutation"):
            moves = ", ".join(f"{c}<-{s}" for c, s in list(found["permutation"].items())[:6])
            message = (f"{len(bad)} of {channels} channels of {layer.name} diverge, and each holds another reference "
                       f"channel (target<-reference: {moves}): the output channels are permuted.")
            fix = pick(context, generic="the target's weights/output channels are in another order: check the "
                                        "channel order of the converted weights (e.g. a group/shuffle or a concat order)")
        else:
            message = (f"{len(bad)} of {channels} channels of {layer.name} diverge while the others match "
                       f"(worst cosine {found['worst'][0][1]:.5f}).")
            fix = pick(context,
                       nnie="a per-tensor quantization range dominated by a few channels: run this layer in 16 bits "
                            "([compile_mode] 2 with the name ending in _hp) or rebalance the channel ranges "
                            "(e.g. cross-layer equalization)",
                       onnxruntime="quantize weights per channel (per_channel=True) or equalize channel ranges",
                       generic="check the diverging channels' weights and quantization: a per-channel range outlier "
                               "makes a per-tensor scale too coarse for the others (use per-channel scales)")
        yield Finding("channel_mismatch", layer.name, "error", message, found, fix)


def channel_evidence(ref: np.ndarray, tgt: np.ndarray) -> dict | None:
    """Per-channel cosines of an NC... pair; evidence when some (not most) channels diverge."""
    cos = channel_cosines(ref, tgt, axis=1)
    score = np.where(np.isnan(cos), -2.0, cos)
    bad = np.flatnonzero(score < GOOD)
    good = score.size - bad.size
    if bad.size == 0 or bad.size > score.size // 2 or good < 1:
        return None
    order = bad[np.argsort(score[bad])]
    worst = [[int(c), None if np.isnan(cos[c]) else float(f"{cos[c]:.5g}")] for c in order[:8]]
    r = np.moveaxis(ref, 1, 0).reshape(ref.shape[1], -1)
    t = np.moveaxis(tgt, 1, 0).reshape(tgt.shape[1], -1)
    absmax = np.max(np.abs(np.nan_to_num(r)), axis=1)
    evidence: dict = {"bad_channels": [int(c) for c in order[:64]], "bad_count": int(bad.size),
                      "channels": int(score.size), "worst": worst,
                      "reference_absmax_bad": [float(f"{absmax[c]:.5g}") for c in order[:8]],
                      "reference_absmax_median": float(np.median(absmax)),
                      "reference_absmax_max": float(absmax.max())}
    if bad.size <= 64:
        mapping = {}
        for c in order:
            sims = [cosine(r[j], t[c]) for j in range(r.shape[0])]
            j = int(np.nanargmax(np.where(np.isnan(sims), -2.0, sims)))
            if j != c and sims[j] > GOOD:
                mapping[int(c)] = j
        if len(mapping) == bad.size:
            evidence["permutation"] = mapping
    return evidence


@register_rule("spatial-offset")
def spatial_offset(context: Context) -> Iterator[Finding]:
    """Shape mismatches of one pixel (ceil/floor pooling, padding), or a shifted origin."""
    yield from _size_off_by_one(context)
    def is_image(layer: LayerResult) -> bool:
        return layer.shape is not None and len(layer.shape) == 4 and min(layer.shape[2], layer.shape[3]) >= 4

    for layer, ref, tgt in candidate_pairs(context, is_image):
        found = shift_evidence(ref, tgt)
        if found is None:
            continue
        context.claim(layer.name)
        dy, dx = found["shift"]
        yield Finding(
            "spatial_offset", layer.name, "error",
            f"{layer.name} in the target is the reference shifted by {dy} row(s) and {dx} column(s) "
            f"(cosine {found['cosine_shifted']:.5f} after the shift, {found['cosine_as_is']:.5f} as is).",
            found,
            pick(context, generic="check padding and alignment conventions of this layer (pads / auto_pad SAME_UPPER "
                                  "vs SAME_LOWER, align_corners / coordinate_transformation_mode of resizes, "
                                  "crop offsets)"))


def _size_off_by_one(context: Context) -> Iterator[Finding]:
    for layer in context.report.layers:
        if layer.status != "shape_mismatch" or layer.shape is None or layer.target_shape is None:
            continue
        rs, ts = tuple(layer.shape), tuple(layer.target_shape)
        ts_nchw = _as_nchw(rs, ts)
        if ts_nchw is None:
            continue
        diffs = [t - r for r, t in zip(rs[2:], ts_nchw[2:])]
        if not any(diffs) or any(abs(d) > 1 for d in diffs):
            continue
        context.claim(layer.name)
        op = layer.op_type or ""
        bigger = "larger" if sum(diffs) > 0 else "smaller"
        if "Pool" in op:
            fix = pick(context, generic="the pooled size is rounded differently: Caffe rounds up (ceil), ONNX/PyTorch "
                                        "default to floor; export with ceil_mode=1 (torch: ceil_mode=True) or match "
                                        "the pads")
        else:
            fix = pick(context, generic="the padding convention differs: check pads / auto_pad (SAME_UPPER vs "
                                        "SAME_LOWER), output_padding of deconvolutions and ceil/floor size rounding")
        evidence = {"reference_shape": list(rs), "target_shape": list(ts), "spatial_difference": diffs}
        evidence.update(_crop_match(context, layer, ts_nchw))
        yield Finding(
            "spatial_offset", layer.name, "error",
            f"{layer.name} is {list(ts_nchw)} in the target but {list(rs)} in the reference: one pixel {bigger} "
            f"({op or 'this layer'} rounds its output size or pads differently).",
            evidence, fix)
        return


def _as_nchw(rs: tuple[int, ...], ts: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(rs) != 4 or len(ts) != 4 or rs[0] != ts[0]:
        return None
    if ts[1] == rs[1]:
        return ts
    if ts[3] == rs[1]:
        return (ts[0], ts[3], ts[1], ts[2])
    return None


def _crop_match(context: Context, layer: LayerResult, ts_nchw: tuple[int, ...]) -> dict:
    """Cosine of the overlapping window at each corner offset (which side holds the extra pixel)."""
    try:
        ref = np.asarray(context.reference[layer.name].load(), dtype=np.float64)
        tgt = np.asarray(context.target[layer.target_name].load(), dtype=np.float64)
    except Exception:
        return {}
    if tuple(tgt.shape) != ts_nchw:
        tgt = tgt.transpose(0, 3, 1, 2)
    h, w = min(ref.shape[2], tgt.shape[2]), min(ref.shape[3], tgt.shape[3])
    best = None
    for oy in range(abs(ref.shape[2] - tgt.shape[2]) + 1):
        for ox in range(abs(ref.shape[3] - tgt.shape[3]) + 1):
            big_is_target = tgt.shape[2] * tgt.shape[3] >= ref.shape[2] * ref.shape[3]
            big, small = (tgt, ref) if big_is_target else (ref, tgt)
            c = cosine(small[:, :, :h, :w], big[:, :, oy:oy + h, ox:ox + w])
            if best is None or (not math.isnan(c) and c > best[0]):
                best = (c, oy, ox)
    if best is None or math.isnan(best[0]):
        return {}
    return {"best_crop_offset": [best[1], best[2]], "cosine_after_crop": float(f"{best[0]:.6g}")}


def shift_evidence(ref: np.ndarray, tgt: np.ndarray, max_shift: int = 8) -> dict | None:
    """Cross-correlation peak off centre that explains the target as a shifted reference."""
    r = np.nan_to_num(ref) - np.nan_to_num(ref).mean(axis=(2, 3), keepdims=True)
    t = np.nan_to_num(tgt) - np.nan_to_num(tgt).mean(axis=(2, 3), keepdims=True)
    h, w = r.shape[2], r.shape[3]
    spec = np.fft.rfft2(t) * np.conj(np.fft.rfft2(r))
    corr = np.fft.irfft2(spec.sum(axis=(0, 1)), s=(h, w))
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = int(dy - h if dy > h // 2 else dy)
    dx = int(dx - w if dx > w // 2 else dx)
    if (dy, dx) == (0, 0) or abs(dy) > max_shift or abs(dx) > max_shift or abs(dy) >= h // 2 or abs(dx) >= w // 2:
        return None
    ys, yt = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xt = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    shifted = cosine(ref[:, :, ys, xs], tgt[:, :, yt, xt])
    as_is = cosine(ref, tgt)
    if not shifted > GOOD or not shifted > (as_is if not math.isnan(as_is) else -1.0) + 0.02:
        return None
    return {"shift": [dy, dx], "cosine_shifted": shifted, "cosine_as_is": as_is}


@register_rule("layout")
def layout(context: Context) -> Iterator[Finding]:
    """Storage layouts netdiff corrected while aligning (NHWC stored, NCHW compared)."""
    counts: dict[str, int] = {}
    example = None
    for layer in context.report.layers:
        t = layer.match.transform if layer.match is not None else None
        if layer.metrics is None or t is None or t.permutation is None:
            continue
        counts[t.description] = counts.get(t.description, 0) + 1
        example = example or layer.name
    if not counts:
        return
    words = ", ".join(f"{n} tensor(s) {d}" for d, n in counts.items())
    yield Finding("layout", None, "info",
                  f"The target stores some tensors in another layout; netdiff transposed them before comparing ({words}).",
                  {"transposed": counts, "example": example},
                  "nothing to change: this is how the target stores them")
