"""Quantization rules: saturation at a clip plateau, and a too-coarse quantization step."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidate_pairs, cosine, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

#: At least this fraction of elements must sit on the plateau.
MIN_SATURATED = 0.001
#: Coarse: at most this many distinct target values.
MAX_LEVELS = 1024
SAMPLE = 1 << 20


@register_rule("quantization-saturation")
def saturation(context: Context) -> Iterator[Finding]:
    """The target is clipped at a plateau while the reference goes beyond it."""
    for layer, *pair in candidate_pairs(context):
        found = saturation_evidence(*pair)
        if found is None:
            continue
        context.claim(layer.name)
        side = "above" if found["side"] == "high" else "below"
        yield Finding(
            "quantization_saturation", layer.name, "error",
            f"{layer.name} is clipped at {found['clip_value']:.4g} in the target ({found['saturated_fraction']:.2%} "
            f"of values) while the reference reaches {found['reference_extreme']:.4g}: the quantization range is "
            "too small.",
            found,
            pick(context,
                 nnie="calibrate with more representative images in [image_list] (20-50 typical ones, not the "
                      "darkest/brightest), or run this layer in 16 bits ([compile_mode] 2 with its name ending in _hp)",
                 ascend="calibrate with representative data, or leave this layer out of int8 quantization "
                        "(AMCT skip_layers)",
                 onnxruntime="calibrate on representative data with CalibrationMethod.MinMax (Percentile/Entropy "
                             "clip outliers), or exclude the node from quantization (nodes_to_exclude=[...])",
                 generic=f"widen the quantization range of this tensor: values {side} the clip value are lost"))


def saturation_evidence(ref: np.ndarray, tgt: np.ndarray) -> dict | None:
    """Evidence of a clip plateau in ``tgt`` that ``ref`` exceeds, or None."""
    r, t = ref.ravel(), tgt.ravel()
    keep = np.isfinite(r) & np.isfinite(t)
    r, t = r[keep], t[keep]
    if t.size < 16:
        return None
    hi, lo = float(t.max()), float(t.min())
    on_hi = np.abs(t - hi) <= 1e-6 * max(abs(hi), 1e-12)
    on_lo = np.abs(t - lo) <= 1e-6 * max(abs(lo), 1e-12)
    inside = ~(on_hi | on_lo)
    if inside.sum() < 8 or not cosine(r[inside], t[inside]) > 0.99:
        return None
    margin = 0.05 * max(float(np.std(r)), 1e-12)
    sides = []
    for side, clip, on, sign in (("high", hi, on_hi, 1.0), ("low", lo, on_lo, -1.0)):
        sat = on & (sign * (r - clip) > margin)
        if sat.sum() < 3 or float(sat.mean()) < MIN_SATURATED or float(np.median(sign * (r[on] - clip))) <= 0:
            continue
        sides.append((float(sat.mean()), side, clip, float(r.max() if sign > 0 else r.min())))
    if not sides:
        return None
    fraction, side, clip, extreme = max(sides)
    return {"side": side, "clip_value": clip, "saturated_fraction": fraction,
            "saturated_fraction_both_sides": sum(s[0] for s in sides),
            "reference_range": [float(r.min()), float(r.max())], "reference_extreme": extreme,
            "cosine_unsaturated": cosine(r[inside], t[inside])}


@register_rule("quantization-coarse")
def coarse(context: Context) -> Iterator[Finding]:
    """Error consistent with a too-large quantization step: few levels, uniform error ≈ step/√12."""
    origins = set(context.report.origins)
    for layer, *pair in candidate_pairs(context):
        found = coarse_evidence(*pair)
        if found is None:
            continue
        context.claim(layer.name)
        yield Finding(
            "quantization_coarse", layer.name, "error" if layer.name in origins else "warning",
            f"{layer.name} takes only {found['distinct_values']} distinct values in the target (step "
            f"{found['step']:.4g}, about {found['effective_bits']:.1f} effective bits): its error "
            f"(std {found['error_std']:.4g}) is the rounding error of a too-coarse quantization step.",
            found,
            pick(context,
                 nnie="run this layer in 16 bits: [compile_mode] 1, or [compile_mode] 2 with the layer's name "
                      "ending in _hp",
                 ascend="leave this layer out of int8 quantization (AMCT skip_layers) or calibrate its range tighter",
                 onnxruntime="quantize with per_channel=True and a 16-bit activation type for this tensor "
                             "(activation_type=QuantType.QInt16 / extra_options), or nodes_to_exclude=[...]",
                 generic="use a finer quantization step for this tensor (per-channel scales, 16-bit activations) "
                         "or keep the layer in float"))


def coarse_evidence(ref: np.ndarray, tgt: np.ndarray) -> dict | None:
    """Evidence that ``tgt`` is ``ref`` rounded to a coarse grid, or None."""
    r, t = ref.ravel(), tgt.ravel()
    if t.size > SAMPLE:
        idx = np.linspace(0, t.size - 1, SAMPLE).astype(np.int64)
        r, t = r[idx], t[idx]
    keep = np.isfinite(r) & np.isfinite(t)
    r, t = r[keep], t[keep]
    if t.size < 64:
        return None
    levels = np.unique(t)
    if levels.size > MAX_LEVELS or levels.size > t.size / 4 or levels.size < 2:
        return None
    gaps = np.diff(levels)
    step = float(np.median(gaps))
    if step <= 0:
        return None
    err = t - r
    inside = (r > levels[0] + step / 2) & (r < levels[-1] - step / 2)  # rounding, not clipping
    if inside.sum() < 32:
        return None
    error_std = float(np.std(err[inside]))
    expected = step / math.sqrt(12.0)
    if not 0.5 <= error_std / expected <= 1.6 or float(np.max(np.abs(err[inside]))) > 1.5 * step:
        return None
    span = float(r.max() - r.min())
    return {"distinct_values": int(levels.size), "step": step, "error_std": error_std,
            "expected_error_std": expected, "effective_bits": math.log2(max(span / step, 1.0)),
            "reference_range": [float(r.min()), float(r.max())]}
