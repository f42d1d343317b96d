"""NNIE-specific causes: stride padding left in and log-quantization flush ("no boxes": diagnosis.detection).

The checks themselves live in :mod:`netdiff.nnie.diagnose`; this module decides which layers
they look at.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidates, introduced_here, toolchain
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding


@register_rule("nnie-stride-padding")
def stride_padding(context: Context) -> Iterator[Finding]:
    """A shape-mismatched NNIE tensor whose extra elements are row padding."""
    from netdiff.nnie.diagnose import check_stride_padding

    if toolchain(context) != "nnie":
        return
    for layer in context.report.layers:
        if layer.status != "shape_mismatch" or layer.target_name is None or layer.name in context.explained:
            continue
        try:
            ref = context.reference[layer.name].load()
            tgt = context.target[layer.target_name].load()
        except Exception:  # unreadable data: the layer already carries status "error"
            continue
        finding = check_stride_padding(ref, tgt, layer.name)
        if finding is not None:
            context.claim(layer.name)
            yield finding


@register_rule("nnie-quantization-range")
def quantization_range(context: Context) -> Iterator[Finding]:
    """An origin whose input the 8-bit log format flushes to zero (one outlier sets the top)."""
    from netdiff.nnie.diagnose import check_quantization_range

    if toolchain(context) != "nnie":
        return
    for layer in candidates(context):
        if layer.name in context.explained or not introduced_here(context, layer):
            continue
        for name in layer.inputs:
            if name not in context.reference:
                continue
            finding = check_quantization_range(np.asarray(context.reference[name].load()), None, layer.name)
            if finding is not None:
                context.claim(layer.name)
                yield finding
                break
