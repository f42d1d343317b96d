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

Each tensor is streamed twice in cache-sized chunks (the fused statistics, then KL, which
needs the ranges), so no full-size temporary is made. Element-wise work runs in the inputs'
precision (float32 for float32/float16 data, float64 otherwise); every chunk's partial sums
are pairwise sums and are accumulated across chunks in float64. Cosine is computed from
‖x − r‖² so that 1 − cosine stays accurate for nearly identical tensors.
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
CHUNK_ELEMENTS = 1 << 15
_NARROW = {"float32", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "bool"}


def work_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every input fits it exactly, else float64."""
    return np.dtype(np.float32) if all(a.dtype.name in _NARROW for a in arrays) else np.dtype(np.float64)


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
    dtype = work_dtype(reference, target)
    acc = _Accumulator(eps)
    for r, x in iter_chunks(reference, target, chunk_elements, dtype):
        acc.add(r, x)
    kl = _kl_divergence(reference, target, acc, chunk_elements, dtype)
    return acc.result(kl)


def iter_chunks(a: np.ndarray, b: np.ndarray, chunk_elements: int = CHUNK_ELEMENTS,
                dtype: np.dtype | type = np.float64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield matching flat chunks of two same-shape arrays as fresh ``dtype`` copies."""
    if a.ndim == 0 or a.size <= chunk_elements:
        yield _copy(a, dtype), _copy(b, dtype)
        return
    row = a.size // a.shape[0]
    if row > chunk_elements:
        for i in range(a.shape[0]):
            yield from iter_chunks(a[i], b[i], chunk_elements, dtype)
        return
    step = max(1, chunk_elements // max(row, 1))
    for i in range(0, a.shape[0], step):
        yield _copy(a[i:i + step], dtype), _copy(b[i:i + step], dtype)


def _copy(a: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """A flat copy (always a copy: callers overwrite chunks in place)."""
    return np.asarray(a).astype(dtype).reshape(-1)


def _sum(a: np.ndarray) -> float:
    return float(a.sum(dtype=a.dtype))


@dataclass
class _SideStats:
    """Streaming sum, sum of squares, min, max and NaN/Inf counts of one side."""

    n: int = 0
    s1: float = 0.0
    s2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    nan: int = 0
    inf: int = 0

    def add(self, v: np.ndarray, sq: float | None = None) -> None:
        """Add a chunk; ``sq`` is Σv² when already known (then v must be all finite)."""
        if sq is None:
            finite = np.isfinite(v)
            nan = int(np.count_nonzero(np.isnan(v)))
            self.nan += nan
            self.inf += int(v.size - np.count_nonzero(finite)) - nan
            v = v[finite]
            sq = _sum(np.square(v, dtype=np.float64))
        if v.size == 0:
            return
        self.n += v.size
        self.s1 += _sum(v)
        self.s2 += sq
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))

    def mean_std(self) -> tuple[float, float]:
        if self.n == 0:
            return math.nan, math.nan
        m = self.s1 / self.n
        return m, math.sqrt(max(self.s2 / self.n - m * m, 0.0))


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
    dd: float = 0.0
    abs_sum: float = 0.0
    abs_max: float = 0.0
    rel_sum: float = 0.0
    rel_max: float = 0.0
    rel_count: int = 0

    def add(self, r: np.ndarray, x: np.ndarray) -> None:
        """Add one chunk (flat arrays of one float dtype, which this method overwrites)."""
        self.count += r.size
        scratch = np.empty_like(r)
        d = np.subtract(x, r)
        dd = _sum(np.square(d, out=scratch))
        rr = _sum(np.square(r, out=scratch))
        xx = _sum(np.square(x, out=scratch))
        if math.isfinite(dd + rr + xx):
            self.ref.add(r, rr)
            self.tgt.add(x, xx)
        else:
            self.ref.add(r)
            self.tgt.add(x)
            keep = np.isfinite(r) & np.isfinite(x)
            r, x = r[keep], x[keep]
            if r.size == 0:
                return
            d = np.subtract(x, r)
            scratch = np.empty_like(r)
            dd = _sum(np.square(d, out=scratch))
            rr = _sum(np.square(r, out=scratch))
            xx = _sum(np.square(x, out=scratch))
        if r.size == 0:
            return
        self.n += r.size
        self.rr += rr
        self.xx += xx
        self.dd += dd
        ad = np.abs(d, out=d)
        self.abs_sum += _sum(ad)
        self.abs_max = max(self.abs_max, float(ad.max()))
        absr = np.abs(r, out=r)
        small = np.less_equal(absr, self.eps, out=np.empty(r.size, bool))
        n_small = int(np.count_nonzero(small))
        if n_small:
            absr[small] = np.inf
        if n_small < r.size:
            rel = np.divide(ad, absr, out=ad)
            self.rel_sum += _sum(rel)
            self.rel_max = max(self.rel_max, float(rel.max()))
            self.rel_count += r.size - n_small

    def result(self, kl: tuple[float, str | None]) -> LayerMetrics:
        notes: list[str] = []
        nan = math.nan
        n = self.n
        if self.count == 0:
            notes.append("empty tensor")
        elif n == 0:
            notes.append("no pair where both sides are finite")
        elif n < self.count:
            notes.append(f"{self.count - n} of {self.count} pairs are NaN/Inf on a side and were skipped")
        cosine, note = _cosine(self.rr, self.xx, self.dd, self.eps) if n else (nan, None)
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


def _cosine(rr: float, xx: float, dd: float, eps: float) -> tuple[float, str | None]:
    """Cosine from ‖r‖², ‖x‖² and ‖x − r‖²: cos = 1 − (‖x − r‖² − (‖x‖ − ‖r‖)²) / (2‖r‖‖x‖)."""
    rn, xn = math.sqrt(rr), math.sqrt(xx)
    if rn <= eps and xn <= eps:
        return 1.0, None
    if rn <= eps:
        return math.nan, "reference is all zero: cosine undefined"
    if xn <= eps:
        return math.nan, "target is all zero: cosine undefined"
    cos = 1.0 - (dd - (xn - rn) ** 2) / (2.0 * rn * xn)
    return max(min(cos, 1.0), -1.0), None


def _kl_divergence(reference: np.ndarray, target: np.ndarray, acc: _Accumulator, chunk_elements: int,
                   dtype: np.dtype | type = np.float64) -> tuple[float, str | None]:
    """msaccucmp's KL(p‖q): p from the target, q from the reference, min-max normalised."""
    if acc.n == 0:
        return math.nan, None
    if math.sqrt(acc.xx) <= acc.eps or math.sqrt(acc.rr) <= acc.eps:
        return math.nan, "KL undefined: a side is all zero"
    sp = sq = cross = 0.0
    partial = acc.n < acc.count
    for r, x in iter_chunks(reference, target, chunk_elements, dtype):
        if partial:
            keep = np.isfinite(r) & np.isfinite(x)
            r, x = r[keep], x[keep]
        p = _normalise(x, acc.tgt.lo, acc.tgt.hi)
        q = _normalise(r, acc.ref.lo, acc.ref.hi)
        sp += _sum(p)
        sq += _sum(q)
        ratio = np.divide(p, q, out=q)
        cross += _sum(np.multiply(p, np.log(ratio, out=ratio), out=p))
    value = cross / sp - math.log(sp) + math.log(sq)
    return (0.0 if abs(value) < acc.eps else value), None


def _normalise(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(v − lo) / (hi − lo), clipped to ≥ f32 eps, in place."""
    if hi > lo:
        np.subtract(v, v.dtype.type(lo), out=v)
        np.multiply(v, v.dtype.type(1.0 / (hi - lo)), out=v)
    return np.maximum(v, v.dtype.type(KL_FLOOR), out=v)


def channel_cosines(reference: np.ndarray, target: np.ndarray, axis: int = 1) -> np.ndarray:
    """Cosine per channel along ``axis`` (NaN where a channel is all zero on one side only).

    Streams one channel at a time; NaN/Inf elements count as zero.
    """
    dtype = work_dtype(reference, target)
    count = reference.shape[axis]
    cos = np.empty(count)
    for c in range(count):
        r = np.take(reference, c, axis=axis).astype(dtype).reshape(-1)
        x = np.take(target, c, axis=axis).astype(dtype).reshape(-1)
        if not (np.isfinite(r).all() and np.isfinite(x).all()):
            r = np.where(np.isfinite(r), r, 0)
            x = np.where(np.isfinite(x), x, 0)
        d = x - r
        cos[c] = _cosine(_sum(np.square(r)), _sum(np.square(x)), _sum(np.square(d)), EPS)[0]
    return cos
