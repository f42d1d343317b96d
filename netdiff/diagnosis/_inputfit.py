"""Explain a target's model input as a transform of the reference input, by trying transforms.

Two observation modes share one engine:

- direct: the target dumped the input itself, so ``apply`` is the identity;
- through the first consumer: the target did not dump the input, but its first consumer (a Conv,
  BatchNorm, Gemm, ... that is affine in the input) was dumped. ``apply`` re-runs that reference
  node, and because the node is affine, ``node(Σ a_c·x_c + b_c)`` is an exact linear combination
  of the node run on one-channel basis inputs, so the same least-squares fit applies.

The fit tries every channel permutation π (for ≤ 4 channels) of a per-channel affine model
``t_c = a_c · r_π(c) + b_c`` and reports R² of each; axis scrambles (the same values read in
another axis order) are tested separately by correlation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from netdiff.diagnosis._common import correlation

MAX_ROWS = 1 << 20
#: ONNX ops that are affine in their data input (so the basis decomposition is exact).
AFFINE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Transpose", "Reshape", "Flatten",
              "Identity", "Squeeze", "Unsqueeze", "Pad", "Add", "Sub", "Mul", "Div", "AveragePool",
              "GlobalAveragePool", "Resize", "Upsample", "Slice", "Concat"}


@dataclass(frozen=True)
class AffineFit:
    """Per-channel affine fit of the target on a channel permutation of the reference."""

    perm: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    r2: float


@dataclass(frozen=True)
class InputExplanation:
    """The best transform found for one input.

    Attributes:
        fits: Affine fit per channel permutation, best first.
        identity: The fit with the identity permutation.
        layout_perm: Axis order whose scramble explains the target (None when none does).
        layout_corr: Correlation reached by that scramble.
        baseline_corr: Correlation of target and reference as aligned.
        baseline_r2: R² of the target against the reference as is (no fit, ``t = r``).
        channel_axis: Channel axis used (None: the tensor was fitted as one channel).
        ref_std: Per-channel std of the reference input.
        plain_r2: R² of each channel permutation alone (``t_c = r_π(c)``, no affine fit).
    """

    fits: list[AffineFit]
    identity: AffineFit
    layout_perm: tuple[int, ...] | None
    layout_corr: float
    baseline_corr: float
    baseline_r2: float
    channel_axis: int | None
    ref_std: tuple[float, ...]
    plain_r2: dict[tuple[int, ...], float] = field(default_factory=dict)

    @property
    def best(self) -> AffineFit:
        return self.fits[0]


def _put(shape: tuple[int, ...], axis: int | None, channel: int, value: np.ndarray | float) -> np.ndarray:
    x = np.zeros(shape, dtype=np.float64)
    if axis is None:
        x[...] = value
    else:
        index = [slice(None)] * len(shape)
        index[axis] = channel
        x[tuple(index)] = value
    return x


def _rows(n: int) -> np.ndarray | slice:
    return slice(None) if n <= MAX_ROWS else np.linspace(0, n - 1, MAX_ROWS).astype(np.int64)


def explain_input(reference: np.ndarray, observed: np.ndarray, apply: Callable[[np.ndarray], np.ndarray],
                  channel_axis: int | None, raw_target: np.ndarray | None = None) -> InputExplanation | None:
    """Fit the observed target (after ``apply``) as a transform of the reference input.

    Args:
        reference: Reference input (model shape).
        observed: What the target shows: its input (direct) or its first consumer's output.
        apply: Maps a candidate input (reference shape, float64) to the observed space.
        channel_axis: Channel axis of the input, or None to fit one global affine.
        raw_target: The target input as stored (direct mode only) for the axis-scramble test.
    """
    r = np.asarray(reference, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64).ravel()
    if not np.isfinite(r).all() or not np.isfinite(y).all() or r.size < 16 or np.ptp(y) == 0 or np.ptp(r) == 0:
        return None
    channels = r.shape[channel_axis] if channel_axis is not None else 1
    if channels > 4:
        channel_axis, channels = None, 1
    rows = _rows(y.size)
    y0 = np.asarray(apply(np.zeros(r.shape)), dtype=np.float64).ravel()
    if y0.size != y.size:
        return None
    take = (lambda v: v[rows]) if isinstance(rows, np.ndarray) else (lambda v: v)
    z = take(y - y0)
    source = [np.take(r, j, axis=channel_axis) if channel_axis is not None else r for j in range(channels)]
    basis = {}
    for c in range(channels):
        basis[(c, "1")] = take(np.asarray(apply(_put(r.shape, channel_axis, c, 1.0)), dtype=np.float64).ravel() - y0)
        for j in range(channels):
            basis[(c, j)] = take(np.asarray(apply(_put(r.shape, channel_axis, c, source[j])), dtype=np.float64).ravel() - y0)
    total = float(np.sum((z - z.mean()) ** 2)) or 1e-300
    fits = []
    plain_r2 = {}
    for perm in itertools.permutations(range(channels)):
        alone = z - sum(basis[(c, perm[c])] for c in range(channels))
        plain_r2[tuple(perm)] = 1.0 - float(alone @ alone) / total
        cols = np.stack([basis[(c, perm[c])] for c in range(channels)] + [basis[(c, "1")] for c in range(channels)], 1)
        coef, *_ = np.linalg.lstsq(cols, z, rcond=None)
        resid = z - cols @ coef
        r2 = 1.0 - float(resid @ resid) / total
        fits.append(AffineFit(tuple(perm), tuple(float(v) for v in coef[:channels]),
                              tuple(float(v) for v in coef[channels:]), r2))
    identity = fits[0]
    plain = z - sum(basis[(c, c)] for c in range(channels))
    baseline_r2 = 1.0 - float(plain @ plain) / total
    fits.sort(key=lambda f: -f.r2)
    baseline = correlation(np.asarray(apply(r)).ravel(), y)
    layout_perm, layout_corr = _scramble(r, y, apply, raw_target)
    std = tuple(float(np.std(s)) for s in source)
    return InputExplanation(fits, identity, layout_perm, layout_corr, baseline, baseline_r2, channel_axis, std,
                            plain_r2)


def _scramble(r: np.ndarray, y: np.ndarray, apply: Callable[[np.ndarray], np.ndarray],
              raw_target: np.ndarray | None) -> tuple[tuple[int, ...] | None, float]:
    """Axis order p such that the target holds ``r.transpose(p)``'s values in memory order."""
    if r.ndim < 2 or r.ndim > 5:
        return None, math.nan
    best, best_corr = None, -1.0
    seen = set()
    for p in itertools.permutations(range(r.ndim)):
        key = tuple(a for a in p if r.shape[a] != 1)
        if key in seen:
            continue
        seen.add(key)
        flat = np.ascontiguousarray(r.transpose(p)).ravel()
        if raw_target is not None:
            corr = correlation(flat, np.asarray(raw_target, dtype=np.float64).ravel())
        else:
            if key == tuple(a for a in range(r.ndim) if r.shape[a] != 1):
                continue
            corr = correlation(np.asarray(apply(flat.reshape(r.shape))).ravel(), y)
        if not math.isnan(corr) and corr > best_corr:
            best, best_corr = tuple(p), corr
    return best, best_corr


def is_identity(fit: AffineFit, ref_std: tuple[float, ...], rtol: float = 0.01) -> bool:
    """True when the fit is (close to) ``t = r``."""
    return all(abs(a - 1.0) <= rtol for a in fit.a) and all(
        abs(b) <= rtol * max(s, 1e-12) for b, s in zip(fit.b, ref_std))


def is_scale(fit: AffineFit, ref_std: tuple[float, ...], rtol: float = 0.01) -> float | None:
    """The common factor k when the fit is ``t = k·r`` (no offset, same k per channel), else None."""
    if not fit.a:
        return None
    k = float(np.mean(fit.a))
    if k == 0 or any(abs(a / k - 1.0) > rtol for a in fit.a):
        return None
    if any(abs(b) > rtol * abs(k) * max(s, 1e-12) for b, s in zip(fit.b, ref_std)):
        return None
    return k
