"""Divergence metrics of a reference/target pair, fused into two streaming passes.

Formulas (x = target, r = reference, over pairs where both are finite; docs/metrics.md):

- cosine   = Σ r·x / (‖r‖·‖x‖), clipped to ≤ 1; 1 when both are all-zero, NaN when one is
- max_abs  = max |x − r|;  mean_abs = mean |x − r|;  rmse = sqrt(mean (x − r)²)
- rel_l2   = ‖x − r‖ / ‖r‖ (0 when both are zero, NaN when only r is)
- sqnr_db  = 20·log10(‖r‖ / ‖x − r‖) (+inf when identical)
- max_rel  = max over |r| > eps of |x / r − 1|;  mean_rel = Σ over |r| > eps of |x / r − 1| / n
  (msaccucmp's definitions: n counts every finite pair)
- kl       = msaccucmp's KullbackLeiblerDivergence of the min-max normalised distributions
- min/max/mean/std of each side over its own finite values, NaN/Inf counts of each side.

Accumulation is float64; each tensor is read once for the fused statistics and once more for
the KL divergence, in cache-sized chunks, so no full-size temporary is ever allocated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from netdiff.types import LayerMetrics

#: msaccucmp's epsilon for relative errors (float64 machine epsilon).
EPS = float(np.finfo(np.float64).eps)
#: f32 epsilon: msaccucmp clips the KL distributions to at least this.
KL_FLOOR = float(np.finfo(np.float32).eps)
CHUNK_ELEMENTS = 1 << 16


def compute_metrics(reference: np.ndarray, target: np.ndarray, *, eps: float = EPS,
                    chunk_elements: int = CHUNK_ELEMENTS) -> LayerMetrics:
    """Compute every divergence metric of ``target`` against ``reference`` (same shape).

    Args:
        reference: Reference values (any real dtype; may be a memory map or a strided view).
        target: Target values, already aligned to the reference's shape.
        eps: Reference magnitudes at or below this are skipped by the relative errors.
        chunk_elements: Elements per streamed chunk.

    Returns:
        The metrics; undefined values are NaN, with a reason in ``notes``.
    """
    if reference.shape != target.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {target.shape}")
    acc = _Accumulator(eps)
    for r, x in iter_chunks(reference, target, chunk_elements):
        acc.add(r, x)
    kl = _kl_divergence(reference, target, acc, chunk_elements)
    return acc.result(kl)


def iter_chunks(a: np.ndarray, b: np.ndarray, chunk_elements: int = CHUNK_ELEMENTS
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield matching flat float64 chunks of two same-shape arrays, copying one chunk at a time."""
    if a.ndim == 0 or a.size <= chunk_elements:
        yield _f64(a).reshape(-1), _f64(b).reshape(-1)
        return
    row = a.size // a.shape[0]
    if row > chunk_elements:
        for i in range(a.shape[0]):
            yield from iter_chunks(a[i], b[i], chunk_elements)
        return
    step = max(1, chunk_elements // max(row, 1))
    for i in range(0, a.shape[0], step):
        yield _f64(a[i:i + step]).reshape(-1), _f64(b[i:i + step]).reshape(-1)


def _f64(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    return np.asarray(a, dtype=np.float64)


@dataclass
class _SideStats:
    """Streaming min/max/mean/std/NaN/Inf of one side (shifted sums for stability)."""

    n: int = 0
    shift: float | None = None
    s1: float = 0.0
    s2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    nan: int = 0
    inf: int = 0

    def add(self, v: np.ndarray, all_finite: bool) -> None:
        if not all_finite:
            finite = np.isfinite(v)
            nan = int(np.isnan(v).sum())
            self.nan += nan
            self.inf += int(v.size - finite.sum()) - nan
            v = v[finite]
        if v.size == 0:
            return
        if self.shift is None:
            self.shift = float(v[0])
        d = v - self.shift
        self.n += v.size
        self.s1 += float(d.sum())
        self.s2 += float(np.dot(d, d))
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))

    def mean_std(self) -> tuple[float, float]:
        if self.n == 0:
            return math.nan, math.nan
        m = self.s1 / self.n
        var = max(self.s2 / self.n - m * m, 0.0)
        return m + (self.shift or 0.0), math.sqrt(var)


@dataclass
class _Accumulator:
    """Fused pass-1 sums over the finite pairs of a reference/target pair."""

    eps: float
    ref: _SideStats = field(default_factory=_SideStats)
    tgt: _SideStats = field(default_factory=_SideStats)
    n: int = 0
    count: int = 0
    rr: float = 0.0
    xx: float = 0.0
    rx: float = 0.0
    dd: float = 0.0
    abs_sum: float = 0.0
    abs_max: float = 0.0
    rel_sum: float = 0.0
    rel_max: float = 0.0
    rel_count: int = 0

    def add(self, r: np.ndarray, x: np.ndarray) -> None:
        self.count += r.size
        d = x - r
        dd = float(np.dot(d, d))
        all_finite = math.isfinite(dd) and math.isfinite(float(r.sum())) and math.isfinite(float(x.sum()))
        self.ref.add(r, all_finite)
        self.tgt.add(x, all_finite)
        if not all_finite:
            keep = np.isfinite(r) & np.isfinite(x)
            r, x = r[keep], x[keep]
            d = x - r
            dd = float(np.dot(d, d))
        if r.size == 0:
            return
        self.n += r.size
        self.rr += float(np.dot(r, r))
        self.xx += float(np.dot(x, x))
        self.rx += float(np.dot(r, x))
        self.dd += dd
        ad = np.abs(d)
        self.abs_sum += float(ad.sum())
        self.abs_max = max(self.abs_max, float(ad.max()))
        big = np.abs(r) > self.eps
        if big.any():
            rel = np.abs(x[big] / r[big] - 1.0)
            self.rel_sum += float(rel.sum())
            self.rel_max = max(self.rel_max, float(rel.max()))
            self.rel_count += int(big.sum())

    def result(self, kl: tuple[float, str | None]) -> LayerMetrics:
        notes: list[str] = []
        nan = math.nan
        if self.count == 0:
            notes.append("empty tensor")
        elif self.n == 0:
            notes.append("no pair where both sides are finite")
        if self.n < self.count and self.n:
            notes.append(f"{self.count - self.n} of {self.count} pairs are NaN/Inf on a side and were skipped")
        n = self.n
        cosine, note = _cosine(self.rr, self.xx, self.rx, self.eps) if n else (nan, None)
        if note:
            notes.append(note)
        rnorm, dnorm = math.sqrt(self.rr), math.sqrt(self.dd)
        if not n:
            rel_l2 = sqnr = nan
        elif rnorm <= self.eps:
            rel_l2 = 0.0 if dnorm <= self.eps else nan
            sqnr = math.inf if dnorm <= self.eps else nan
            if dnorm > self.eps:
                notes.append("reference is all zero: rel_l2 and sqnr undefined")
        else:
            rel_l2 = dnorm / rnorm
            sqnr = math.inf if dnorm == 0 else 20.0 * math.log10(rnorm / dnorm)
        if kl[1]:
            notes.append(kl[1])
        rmean, rstd = self.ref.mean_std()
        tmean, tstd = self.tgt.mean_std()
        return LayerMetrics(
            cosine=cosine, max_abs=self.abs_max if n else nan, mean_abs=self.abs_sum / n if n else nan,
            rmse=math.sqrt(self.dd / n) if n else nan, rel_l2=rel_l2, sqnr_db=sqnr,
            max_rel=self.rel_max if n else nan, mean_rel=self.rel_sum / n if n else nan, kl=kl[0],
            ref_min=_finite_or_nan(self.ref.lo), ref_max=_finite_or_nan(self.ref.hi), ref_mean=rmean, ref_std=rstd,
            target_min=_finite_or_nan(self.tgt.lo), target_max=_finite_or_nan(self.tgt.hi),
            target_mean=tmean, target_std=tstd,
            ref_nan=self.ref.nan, ref_inf=self.ref.inf, target_nan=self.tgt.nan, target_inf=self.tgt.inf,
            count=self.count, finite_count=n, notes=tuple(notes),
        )


def _finite_or_nan(v: float) -> float:
    return v if math.isfinite(v) else math.nan


def _cosine(rr: float, xx: float, rx: float, eps: float) -> tuple[float, str | None]:
    rn, xn = math.sqrt(rr), math.sqrt(xx)
    if rn <= eps and xn <= eps:
        return 1.0, None
    if rn <= eps:
        return math.nan, "reference is all zero: cosine undefined"
    if xn <= eps:
        return math.nan, "target is all zero: cosine undefined"
    return min(rx / (rn * xn), 1.0), None


def _kl_divergence(reference: np.ndarray, target: np.ndarray, acc: _Accumulator,
                   chunk_elements: int) -> tuple[float, str | None]:
    """msaccucmp's KL(p‖q): p from the target, q from the reference, min-max normalised."""
    if acc.n == 0:
        return math.nan, None
    if math.sqrt(acc.xx) <= acc.eps or math.sqrt(acc.rr) <= acc.eps:
        return math.nan, "KL undefined: a side is all zero"
    lo_x, hi_x, lo_r, hi_r = acc.tgt.lo, acc.tgt.hi, acc.ref.lo, acc.ref.hi
    sp = sq = cross = 0.0
    partial = acc.n < acc.count
    for r, x in iter_chunks(reference, target, chunk_elements):
        if partial:
            keep = np.isfinite(r) & np.isfinite(x)
            r, x = r[keep], x[keep]
        p = _normalise(x, lo_x, hi_x)
        q = _normalise(r, lo_r, hi_r)
        sp += float(p.sum())
        sq += float(q.sum())
        cross += float(np.dot(p, np.log(p) - np.log(q)))
    value = cross / sp - math.log(sp) + math.log(sq)
    return (0.0 if abs(value) < acc.eps else value), None


def _normalise(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = (v - lo) / (hi - lo) if hi > lo else v.copy()
    return np.maximum(out, KL_FLOOR, out=out)


def channel_cosines(reference: np.ndarray, target: np.ndarray, axis: int = 1) -> np.ndarray:
    """Cosine per channel along ``axis`` (NaN where a channel is all zero on one side only)."""
    r = np.moveaxis(np.asarray(reference, dtype=np.float64), axis, 0).reshape(reference.shape[axis], -1)
    x = np.moveaxis(np.asarray(target, dtype=np.float64), axis, 0).reshape(target.shape[axis], -1)
    r = np.where(np.isfinite(r), r, 0.0)
    x = np.where(np.isfinite(x), x, 0.0)
    rr = np.einsum("ij,ij->i", r, r)
    xx = np.einsum("ij,ij->i", x, x)
    rx = np.einsum("ij,ij->i", r, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.minimum(rx / np.sqrt(rr * xx), 1.0)
    both_zero = (rr <= EPS) & (xx <= EPS)
    cos[both_zero] = 1.0
    return cos
