"""Input quantization saturation: a quantized model clips its graph input to the calibrated range.

A QDQ model quantizes its input on entry (QuantizeLinear, then DequantizeLinear): values outside
the range the calibration data covered are clipped, and every layer after sees the clipped copy.
The converted-model adapter puts that copy on the input (``meta["input_quantization"]``), so the
input row shows the clipping; this rule names it before the generic input rules do.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

#: At least this fraction of the input's values must fall outside the calibrated range.
MIN_CLIPPED = 0.001


@register_rule("input-quantization")
def input_saturation(context: Context) -> Iterator[Finding]:
    """The reference input exceeds the range the target model quantizes its input to."""
    by_name = {x.name: x for x in context.report.layers}
    for name in context.reference.graph_inputs:
        layer = by_name.get(name)
        if layer is None or layer.metrics is None or layer.status == "ok" or layer.target_name is None:
            continue
        quant = dict(context.target[layer.target_name].meta or {}).get("input_quantization")
        if not quant:
            continue
        found = clip_evidence(np.asarray(context.reference[name].load(), dtype=np.float64), quant)
        if found is None:
            continue
        context.claim(name)
        lo, hi = found["calibrated_range"]
        rlo, rhi = found["input_range"]
        yield Finding(
            "quantization_saturation", name, "error" if layer.status == "diverged" else "warning",
            f"{name} is clipped by the target model's input quantization to its calibrated range "
            f"[{lo:.4g}, {hi:.4g}]: {found['saturated_fraction']:.2%} of the input's values lie outside "
            f"(the input spans [{rlo:.4g}, {rhi:.4g}]), and every layer after sees the clipped copy.",
            found,
            pick(context,
                 onnxruntime="calibrate on data representative of the inputs the model gets (covering their "
                             "range), or widen the input's range (extra_options TensorQuantOverrides "
                             f"{{{name!r}: [{{'rmin': np.float32({rlo:.4g}), 'rmax': np.float32({rhi:.4g})}}]}}; "
                             "onnxruntime wants numpy floats there)",
                 generic="calibrate on data representative of the inputs the model gets, or widen the input's "
                         "quantization range to cover them"))


def clip_evidence(ref: np.ndarray, quant: dict) -> dict | None:
    """How much of ``ref`` lies outside the quantized range in ``quant``, or None below :data:`MIN_CLIPPED`."""
    lo, hi = (float(v) for v in quant["range"])
    r = ref.ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None
    step = float(quant["scale"])
    below, above = r < lo - step / 2, r > hi + step / 2  # beyond rounding to the last level
    fraction = float(np.mean(below | above))
    if fraction < MIN_CLIPPED:
        return None
    return {"saturated_fraction": fraction, "below_fraction": float(np.mean(below)),
            "above_fraction": float(np.mean(above)), "calibrated_range": [lo, hi],
            "input_range": [float(r.min()), float(r.max())], "scale": step,
            "zero_point": int(quant["zero_point"]), "quantized_type": str(quant.get("type", ""))}
