"""NNIE-specific checks on one (reference, target) pair; each returns a Finding or None.

Every helper takes ``(reference, target, layer, cfg)``: the reference array, the target array
as read (any shape), the reference layer name, and the mapper cfg or None. The diagnosis stage
calls them; they are also usable on their own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdiff.nnie.cfg import MapperConfig
from netdiff.nnie.logquant import Q12, flush_threshold, flushed_fraction
from netdiff.types import Finding

#: Row alignments the NNIE uses (DDR3 16 B, DDR4 32 B; 256 B is suggested for speed).
ALIGNMENTS = (16, 32, 256)


def _flat(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(np.dot(a, b) / (na * nb))


def check_output_scale(reference: Any, target: Any, layer: str | None, cfg: MapperConfig | None = None,
                       tolerance: float = 0.05) -> Finding | None:
    """Target = 4096 x reference (board output left in Q20.12), or 1/4096 (divided twice).

    The ratio is the least-squares slope of target on reference; it must explain the target
    (relative residual < 0.3) and be within ``tolerance`` of 4096 or 1/4096.
    """
    r, t = _flat(reference), _flat(target)
    if r.size != t.size or r.size == 0:
        return None
    ok = np.isfinite(r) & np.isfinite(t)
    r, t = r[ok], t[ok]
    rr = float(np.dot(r, r))
    if rr == 0.0 or not np.any(t):
        return None
    ratio = float(np.dot(r, t) / rr)
    residual = float(np.linalg.norm(t - ratio * r) / (np.linalg.norm(t) or 1.0))
    evidence = {"ratio": ratio, "fit_residual": residual, "cosine": _cosine(r, t), "q12_base": Q12}
    if residual > 0.3:
        return None
    if abs(ratio / Q12 - 1.0) <= tolerance:
        return Finding("output_scale", layer, "error",
                       f"{layer or 'the output'} is {ratio:.0f}x the reference: the NNIE output is Q20.12 and was not divided by 4096",
                       evidence,
                       "divide the s32 output by 4096 (SAMPLE_SVP_NNIE_QUANT_BASE); read raw blobs with the "
                       "nnie-blob reader (q12=true), and compare detection thresholds in Q12 (0.5*4096)")
    if abs(ratio * Q12 - 1.0) <= tolerance:
        return Finding("output_scale", layer, "error",
                       f"{layer or 'the output'} is 1/{1 / ratio:.0f} of the reference: it was divided by 4096 twice",
                       evidence, "divide by 4096 once: the nnie readers already convert Q20.12 (use q12=false "
                       "or dtype=f32 for data the application already converted)")
    return None


def check_stride_padding(reference: Any, target: Any, layer: str | None, cfg: MapperConfig | None = None,
                         min_cosine: float = 0.9) -> Finding | None:
    """Row stride padding left in (target has padded rows), read as contiguous, or written without it.

    Tries row strides ``ALIGN(W * elem, a)`` for elem 4 (s32) and 1 (u8) and the alignments of
    ``cfg.internal_stride`` first, then 16/32/256 bytes.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim < 2 or ref.size == 0:
        return None
    w = int(ref.shape[-1])
    rows = ref.size // w
    r = ref.reshape(rows, w)
    t = _flat(target)
    aligns = ([cfg.internal_stride] if cfg is not None else []) + [a for a in ALIGNMENTS if cfg is None or a != cfg.internal_stride]
    for elem in (4, 1):
        for a in aligns:
            stride = -(-w * elem // a) * a // elem
            if stride == w:
                continue
            evidence = {"reference_shape": list(ref.shape), "target_size": int(t.size), "row_width": w,
                        "row_stride_elements": stride, "row_stride_bytes": stride * elem, "element_bytes": elem,
                        "alignment": a, "target_shape": list(np.shape(target))}
            if t.size == rows * stride:
                cos = _cosine(r.ravel(), t.reshape(rows, stride)[:, :w].ravel())
                if cos >= min_cosine:
                    return Finding("input_layout", layer, "error",
                                   f"{layer or 'the tensor'} still holds row padding: {w} values per row stored in "
                                   f"{stride} ({stride * elem}-byte stride); cosine after stripping it {cos:.4f}",
                                   {**evidence, "cosine_after_strip": cos},
                                   f"strip the padding: keep the first {w * elem} bytes of every {stride * elem}-byte "
                                   f"row (nnie-blob reader: stride={stride * elem})")
            if t.size == r.size:
                direct = _cosine(r.ravel(), t)
                fit = rows * w // stride
                if fit >= 2:
                    cos = _cosine(r[:fit].ravel(), t[:fit * stride].reshape(fit, stride)[:, :w].ravel())
                    if cos >= min_cosine and (math.isnan(direct) or cos > direct + 0.05):
                        return Finding("input_layout", layer, "error",
                                       f"{layer or 'the tensor'} was read as contiguous from a stride-padded blob "
                                       f"({stride * elem}-byte rows); cosine {direct:.4f} -> {cos:.4f} when read with the stride",
                                       {**evidence, "cosine_direct": direct, "cosine_with_stride": cos},
                                       f"read each row at a {stride * elem}-byte stride and keep its first {w} values")
                padded = np.zeros(rows * stride)
                padded[:r.size] = r.ravel()
                cos = _cosine(padded.reshape(rows, stride)[:, :w].ravel(), t)
                if cos >= min_cosine and (math.isnan(direct) or cos > direct + 0.05):
                    return Finding("input_layout", layer, "error",
                                   f"{layer or 'the input'} was written without the blob's {stride * elem}-byte row stride: "
                                   f"the device sees shifted rows (cosine {direct:.4f} -> {cos:.4f} when modelled)",
                                   {**evidence, "cosine_direct": direct, "cosine_modelled": cos},
                                   f"write each row of {w * elem} bytes at a {stride * elem}-byte stride "
                                   "(u32Stride of the SVP_BLOB_S)")
    return None


def check_quantization_range(reference: Any, target: Any | None, layer: str | None, cfg: MapperConfig | None = None,
                             top: float | None = None, min_fraction: float = 0.25) -> Finding | None:
    """A tensor whose log quantization flushes most values to zero, or clips them at the top.

    Args:
        reference: The float tensor that the NNIE quantizes (a layer input, or weights).
        target: The device's version of the same tensor, or None (prediction only).
        layer: Layer name for the finding.
        cfg: Mapper cfg (its compile_mode and ``_hp`` names give 8 or 16 bits).
        top: Calibrated top; defaults to max |reference|.
        min_fraction: Flushed fraction (of non-zero values) that triggers the finding.
    """
    r = _flat(reference)
    r = np.where(np.isfinite(r), r, 0.0)
    mag = np.abs(r)
    nonzero = mag > 0
    if not nonzero.any():
        return None
    bits = cfg.bits_for(layer or "") if cfg is not None else 8
    ref_max = float(mag.max())
    t_top = ref_max if top is None else float(top)
    p99 = float(np.percentile(mag[nonzero], 99))
    evidence: dict[str, Any] = {"bits": bits, "reference_max": ref_max, "calibrated_top": t_top,
                                "reference_p99": p99, "max_over_p99": ref_max / p99 if p99 else float("inf"),
                                "flush_threshold": flush_threshold(t_top, bits)}
    t = _flat(target) if target is not None and np.size(target) == r.size else None
    if t is not None:
        t = np.where(np.isfinite(t), t, 0.0)
        t_max = float(np.abs(t).max())
        clipped = float(np.mean(mag[nonzero] > t_max * 1.07)) if t_max > 0 else 0.0
        if top is not None and ref_max > t_top * 1.07 and clipped > 0.001:
            evidence.update({"target_max": t_max, "clipped_fraction": clipped})
            return Finding("quantization_saturation", layer, "warning",
                           f"{clipped:.1%} of {layer or 'the tensor'} exceed the calibrated top {t_top:.4g} "
                           f"(runtime max {ref_max:.4g}) and saturate", evidence,
                           "calibrate with images that cover the runtime range (image_list), or use "
                           "compile_mode 1 / an _hp layer name")
    predicted = flushed_fraction(r, t_top, bits)
    evidence["flushed_fraction"] = predicted
    if t is not None:
        observed = float(np.mean(t[nonzero] == 0.0))
        evidence["target_zero_fraction"] = observed
        predicted = max(predicted, observed)
    if predicted < min_fraction:
        return None
    octaves = 8 if bits == 8 else 11
    return Finding("quantization_coarse", layer, "warning" if predicted < 0.5 else "error",
                   f"{predicted:.0%} of {layer or 'the tensor'} fall below max/{2 ** (octaves + 1)} and become 0 in "
                   f"NNIE's {bits}-bit log format: the max ({ref_max:.4g}) is {evidence['max_over_p99']:.0f}x the 99th "
                   f"percentile ({p99:.4g})", evidence,
                   f"tame the outlier (clip, BN merge, QAT) or give this layer 16 bits: compile_mode 2 with the "
                   f"layer renamed '{(layer or 'layer')}_hp', or compile_mode 1")


def check_detection_scores(reference: Any, target: Any, layer: str | None, cfg: MapperConfig | None = None,
                           threshold: float = 0.5) -> Finding | None:
    """"No boxes": the reference has scores above ``threshold``, the target has (almost) none."""
    r, t = _flat(reference), _flat(target)
    r, t = r[np.isfinite(r)], t[np.isfinite(t)]
    ref_above = int(np.sum(r >= threshold))
    tgt_above = int(np.sum(t >= threshold))
    if ref_above == 0 or tgt_above > ref_above * 0.1:
        return None
    t_max = float(t.max()) if t.size else float("nan")
    r_max = float(r.max())
    evidence = {"threshold": threshold, "reference_above": ref_above, "target_above": tgt_above,
                "reference_max": r_max, "target_max": t_max,
                "target_zero_fraction": float(np.mean(t == 0.0)) if t.size else float("nan")}
    if t.size and np.all(t == t.flat[0]):
        cause = "the target scores are constant (dead head)"
        suggestion = "find the first diverging layer before the head; check input preprocessing and output_scale"
    elif t_max > 0 and abs(r_max / t_max / Q12 - 1) < 0.05:
        cause = "the target scores are 4096x too small (divided by 4096 twice)"
        suggestion = "divide by 4096 once; SDK thresholds are in Q12 (u32ConfThresh = 0.5f*4096)"
    else:
        cause = f"the target's best score is {t_max:.4g} vs {r_max:.4g}"
        suggestion = ("check the score layer's quantization (compile_mode 1 or an _hp name for the head), "
                      "thresholds in Q12, and the blob order/layout the post-processing expects")
    return Finding("detection_scores_collapsed", layer, "error",
                   f"no boxes: {ref_above} reference scores reach {threshold:g}, {tgt_above} target scores do; {cause}",
                   evidence, suggestion)


def diagnose_pair(reference: Any, target: Any, layer: str | None, cfg: MapperConfig | None = None) -> list[Finding]:
    """Run the shape-independent checks that apply to this pair and return their findings."""
    found = [check_stride_padding(reference, target, layer, cfg)]
    if np.size(reference) == np.size(target):
        found.append(check_output_scale(reference, target, layer, cfg))
        if found[-1] is None:
            found.append(check_quantization_range(reference, target, layer, cfg))
    return [f for f in found if f is not None]
