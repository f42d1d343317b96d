"""Ascend-specific causes: divergence that is just fp16 precision under atc's force_fp16 default."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidate_pairs, toolchain
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

#: An error within this many fp16 units in the last place of the largest value the op sees
#: (its inputs or its output) is fp16 precision, not a wrong conversion.
FP16_ULPS = 16
FP16_UNIT = 2.0 ** -11


@register_rule("ascend-fp16-precision")
def fp16_precision(context: Context) -> Iterator[Finding]:
    """With force_fp16, say when an origin's error stays within a few fp16 ulps of the values it handles."""
    mode = str(context.target.meta.get("precision_mode", ""))
    if toolchain(context) != "ascend" or mode != "force_fp16":
        return
    def finite_origin(layer: LayerResult) -> bool:
        m = layer.metrics
        return layer.introduced and m is not None and not (m.target_nan or m.target_inf)

    for layer, ref, tgt in candidate_pairs(context, finite_origin):
        m = layer.metrics
        scale = float(np.abs(ref).max())
        for name in layer.inputs:
            if name in context.reference:
                scale = max(scale, float(np.nanmax(np.abs(np.asarray(context.reference[name].load(), np.float64)))))
        error = float(np.abs(tgt - ref).max())
        if scale <= 0 or error > FP16_ULPS * FP16_UNIT * scale:
            continue
        ulps = error / (FP16_UNIT * scale)
        context.claim(layer.name)
        yield Finding(
            "fp16_precision", layer.name, "warning",
            f"{layer.name} diverges, but its largest error is {ulps:.1f} fp16 units of the largest value it handles "
            f"({scale:.4g}); the model was converted with precision_mode=force_fp16, so this looks like fp16 rounding "
            "made visible by the op (cancellation or small outputs), not a wrong conversion",
            {"precision_mode": mode, "precision_mode_source": context.target.meta.get("precision_mode_source"),
             "max_abs_error": error, "value_scale": scale, "fp16_ulps": ulps, "cosine": m.cosine,
             "heuristic": True},
            f"confirm by converting with --precision_mode=must_keep_origin_dtype (or keep {layer.op_type or 'this op'} "
            "in fp32 via allow_mix_precision + --modify_mixlist); if the final outputs are fine, fp16 is acceptable")
