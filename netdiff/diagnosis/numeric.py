"""Numeric failures: fp16 overflow, NaN/Inf in the target, dead (constant) outputs.

These look at every compared layer's metrics (already computed, so trivially cheap) and load
data only for the one layer they report: the first where the failure appears.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import compared, node_name, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

FP16_MAX = 65504.0


def _ref_absmax(layer: LayerResult) -> float:
    m = layer.metrics
    values = [abs(v) for v in (m.ref_min, m.ref_max) if not math.isnan(v)]
    return max(values) if values else math.nan


@register_rule("fp16-overflow")
def fp16_overflow(context: Context) -> Iterator[Finding]:
    """The first layer whose reference exceeds the fp16 range where the target has Inf/NaN or clamps."""
    for layer in compared(context.report.layers):
        m = layer.metrics
        big = _ref_absmax(layer)
        if not big > FP16_MAX:
            continue
        nonfinite = (m.target_nan + m.target_inf) - (m.ref_nan + m.ref_inf)
        target_top = max((abs(v) for v in (m.target_min, m.target_max) if not math.isnan(v)), default=math.nan)
        clamps = abs(target_top - FP16_MAX) <= 0.001 * FP16_MAX
        if nonfinite <= 0 and not clamps:
            continue
        pair = context.cached_pair(layer)
        above = int(np.sum(np.abs(pair[0]) > FP16_MAX)) if pair is not None else None
        context.claim(layer.name)
        if nonfinite > 0:
            context.options["_nonfinite_named"] = True
        yield Finding(
            "fp16_overflow", layer.name, "error",
            f"{layer.name} reaches {big:.4g} in the reference, beyond the fp16 maximum 65504: the target "
            + ("turns it into Inf/NaN." if nonfinite > 0 else "clamps it at 65504."),
            {"reference_absmax": big, "elements_above_fp16_max": above, "target_nan": m.target_nan,
             "target_inf": m.target_inf, "target_absmax": None if math.isnan(target_top) else target_top},
            pick(context,
                 ascend=f"keep {layer.op_type or 'this op'} in fp32: --precision_mode=allow_mix_precision with the op "
                        "in the fp32 list (--modify_mixlist), or --precision_mode=must_keep_origin_dtype",
                 onnxruntime="keep this node in fp32 when converting (onnxconverter_common.float16."
                             f"convert_float_to_float16(model, node_block_list=['{node_name(layer)}'])) or rescale its weights",
                 generic="keep this layer in fp32, or rescale the weights so activations stay below 65504"))
        return


@register_rule("nan-inf")
def nan_inf(context: Context) -> Iterator[Finding]:
    """The first layer where the target has NaN/Inf that the reference does not."""
    if context.options.get("_nonfinite_named"):
        return  # fp16 overflow already named where the Inf/NaN start
    for layer in compared(context.report.layers):
        m = layer.metrics
        if m.target_nan + m.target_inf <= m.ref_nan + m.ref_inf or layer.name in context.explained:
            continue
        pair = context.cached_pair(layer)
        if pair is None:
            continue
        ref, tgt = pair
        bad = np.isfinite(ref) & ~np.isfinite(tgt)
        count = int(bad.sum())
        if count == 0:
            continue
        context.claim(layer.name)
        yield Finding(
            "nan_inf", layer.name, "error",
            f"{layer.name} has {count} NaN/Inf value(s) in the target where the reference is finite.",
            {"nonfinite": count, "fraction": count / max(ref.size, 1), "target_nan": m.target_nan,
             "target_inf": m.target_inf, "reference_range": [m.ref_min, m.ref_max]},
            pick(context,
                 ascend="check this op's inputs for a division by zero or log/sqrt of non-positive values in fp16; "
                        "keep the op in fp32 (--modify_mixlist) if the reference is near the fp16 range",
                 generic="check the layer for a division by zero, log/sqrt of non-positive values or an overflowing "
                         "intermediate (run it in fp32 to confirm)"))
        return


@register_rule("dead-output")
def dead_output(context: Context) -> Iterator[Finding]:
    """The first layer whose target is constant (or all zero) where the reference varies."""
    for layer in compared(context.report.layers):
        m = layer.metrics
        if layer.name in context.explained or layer.status != "diverged":
            continue
        if math.isnan(m.target_std) or math.isnan(m.ref_std) or m.finite_count < 2:
            continue
        scale = max(abs(m.ref_mean), m.ref_std, 1e-30)
        if not (m.target_std <= 1e-7 * max(abs(m.target_mean), scale) and m.ref_std > 1e-4 * scale):
            continue
        value = m.target_mean
        context.claim(layer.name)
        words = "all zero" if value == 0 else f"constant {value:.6g}"
        yield Finding(
            "dead_output", layer.name, "error",
            f"{layer.name} is {words} in the target while the reference varies (std {m.ref_std:.4g}).",
            {"target_value": value, "reference_std": m.ref_std, "reference_range": [m.ref_min, m.ref_max]},
            pick(context,
                 nnie="check the layer's quantization: a log-quantized range that flushes every value to zero, or "
                      "weights missing from the caffemodel (a layer name that does not match)",
                 generic="check that the layer's weights were loaded (a renamed layer keeps zero weights), that its "
                         "quantization scale is not zero, and that its input is connected"))
        return
