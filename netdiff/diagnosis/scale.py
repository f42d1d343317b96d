"""Output scale: a tensor that equals the reference times a constant (unconverted fixed point, ...)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidate_pairs, describe_factor, name_constant, pick, toolchain
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

#: The fit must explain the target this well (‖t − k·r‖ / ‖t‖).
MAX_RESIDUAL = 0.02
#: A ratio fitted on fewer values proves nothing (a scalar constant, an epsilon, a tiny weight).
MIN_ELEMENTS = 8


def scale_fit(reference: np.ndarray, target: np.ndarray) -> tuple[float, float] | None:
    """Least-squares k of ``target ≈ k · reference`` and the relative residual, over finite pairs."""
    r = reference.ravel()
    t = target.ravel()
    keep = np.isfinite(r) & np.isfinite(t)
    r, t = r[keep], t[keep]
    rr, tt = float(r @ r), float(t @ t)
    if rr == 0 or tt == 0:
        return None
    k = float(r @ t) / rr
    return k, float(np.linalg.norm(t - k * r)) / math.sqrt(tt)


@register_rule("output-scale")
def output_scale(context: Context) -> Iterator[Finding]:
    """Origins and graph outputs whose target is a constant multiple (≠ 1) of the reference."""
    seen: list[float] = []
    for layer, *pair in candidate_pairs(context):
        if _distinct_pairs(*pair) < MIN_ELEMENTS:
            continue  # one value (or a handful) fits any factor
        fit = scale_fit(*pair)
        if fit is None:
            continue
        k, residual = fit
        if residual > MAX_RESIDUAL or (name_constant(k) is None and 0.5 <= abs(k) <= 2.0):
            continue  # a factor near 1 that is no known constant is an error like any other
        context.claim(layer.name)
        if any(abs(k / s - 1.0) < 0.02 for s in seen):
            continue  # the same factor carried downstream: already named at its first layer
        seen.append(k)
        yield _finding(context, layer.name, k, residual, pair)


def _distinct_pairs(reference: np.ndarray, target: np.ndarray) -> int:
    """How many finite, nonzero reference values the fit rests on."""
    r = reference.ravel()
    return int(np.count_nonzero(np.isfinite(r) & np.isfinite(target.ravel()) & (r != 0)))


def _finding(context: Context, name: str, k: float, residual: float, pair: tuple[np.ndarray, np.ndarray]) -> Finding:
    if toolchain(context) == "nnie":
        from netdiff.nnie.diagnose import check_output_scale

        nnie = check_output_scale(pair[0], pair[1], name)
        if nnie is not None:
            return nnie
    label = name_constant(k)
    evidence = {"factor": float(f"{k:.6g}"), "factor_named": label, "fit_residual": residual,
                "elements": _distinct_pairs(*pair)}
    if label and label.startswith("4096"):
        why = "a Q20.12 fixed-point result (NNIE) was not divided by 4096"
        fix = "divide the s32 output by 4096 (read it with the nnie-blob reader, q12=true)"
    elif label and label.startswith("1/4096"):
        why = "a fixed-point result was divided by 4096 twice"
        fix = "divide by 4096 only once"
    elif label and label.startswith("2^"):
        n = int(label[2:])
        why = f"a fixed-point result with {abs(n)} fraction bits was not shifted back" if n > 0 else \
            f"a value was shifted right by {-n} bits once too often"
        fix = f"multiply by 2^{-n} (= {2.0 ** -n:.6g}) where the target's fixed-point output is converted"
    elif label == "-1":
        why = "the sign is inverted"
        fix = "check the sign convention of this layer (negated weights or a subtraction in the wrong order)"
    else:
        why = "a scale (de-normalization, output scaling) is missing or applied twice"
        fix = f"multiply the target's {name} by {1.0 / k:.6g}, or apply the missing output scaling in the target"
    return Finding("output_scale", name, "error",
                   f"{name} is {describe_factor(k)} × the reference ({evidence['elements']} values fitted): {why}.",
                   evidence,
                   pick(context, generic=fix))
