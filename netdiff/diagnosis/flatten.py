"""Flatten order: the target flattened a feature map in another axis order (HWC instead of CHW).

A classic of layout conversions: a network trained NCHW flattens ``C, H, W`` before its first
fully connected layer; a target that holds the feature map as NHWC (a TensorFlow export, an NPU)
and flattens it as it is feeds the FC layer the same numbers in ``H, W, C`` order, so every
following value is wrong although each layer is right. For an origin Flatten/Reshape from 4-D to
2-D, the target's own input is flattened in each order of its three inner axes; one that reproduces
the target's output while ``C, H, W`` does not names the cause.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from netdiff.diagnosis._common import cosine, explain_origins, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

FLATTEN_OPS = ("Flatten", "Reshape")
#: Another order must reproduce the target at least this well ...
REPRODUCED = 0.9999
#: ... and leave at most this share of the model's order error (1 - cosine).
EXPLAINED = 0.2
_AXES = "CHW"


@register_rule("flatten-order")
def flatten_order(context: Context) -> Iterator[Finding]:
    """Name the axis order in which the target flattened a 4-D feature map."""
    yield from explain_origins(context, FLATTEN_OPS, _explain)


def _explain(context: Context, name: str, runner: Any, feeds: dict[str, np.ndarray],
             target_out: np.ndarray) -> Finding | None:
    node = runner.node
    data = feeds.get(node.input[0]) if node.input else None
    if data is None or np.ndim(data) != 4 or np.ndim(target_out) != 2:
        return None
    n = data.shape[0]
    if target_out.shape != (n, data.size // max(n, 1)) or min(data.shape[1:]) < 1 or sorted(data.shape[1:])[-2] < 2:
        return None  # flattening a map with one non-trivial axis is the same in every order
    scores = {}
    for order in itertools.permutations((1, 2, 3)):
        flat = np.transpose(data, (0, *order)).reshape(n, -1)
        scores[order] = cosine(flat, target_out)
    own = scores[(1, 2, 3)]
    others = {o: c for o, c in scores.items() if o != (1, 2, 3) and c == c}
    if own != own or not others:
        return None
    best = max(others, key=others.__getitem__)
    best_cos = others[best]
    if not best_cos >= REPRODUCED or (1 - best_cos) > EXPLAINED * (1 - own):
        return None
    target_order = "".join(_AXES[a - 1] for a in best)
    severity = "error" if own < context.report.thresholds.cosine else "warning"
    evidence = {"op_type": node.op_type, "input_shape": list(data.shape), "model_order": "CHW",
                "target_order": target_order, "cosine_reproduced": best_cos, "cosine_model_order": own}
    message = (f"{name}: flattening its input in {target_order} order reproduces the target's output (cosine "
               f"{best_cos:.5f}); the model flattens C, H, W (cosine {own:.5f}): the target flattened a feature map "
               f"held as N{target_order}")
    fix = pick(context, generic=f"transpose the feature map back to NCHW before the flatten (or permute the rows of "
                                f"the next fully connected layer's weights from CHW to {target_order} order) in "
                                "the converted model")
    return Finding("flatten_order", name, severity, message, evidence, fix)
