"""Divergence metrics of a reference/target pair, fused into two streaming passes.

Formulas (x = target, r = reference, over pairs where both are finite; docs/metrics.md):

- cosine   = Σ r·x / (‖r‖·‖x‖), clipped to [−1, 1]; 1 when both are all-zero, NaN when one is
  (from the float64 sums Σr², Σx², Σrx, Σ(x − r)²; see :func:`cosine_from_sums` for the two regimes)
- max_abs  = max |x − r|;  mean_abs = mean |x − r|;  rmse = sqrt(mean (x − r)²)
- rel_l2   = ‖x − r‖ / ‖r‖ (0 when both are zero, NaN when only r is)
- sqnr_db  = 20·log10(‖r‖ / ‖x − r‖) (+inf when identical)
- max_rel  = max over |r| > eps of |x / r − 1|;  mean_rel = Σ over |r| > eps of |x / r − 1| / n
  (msaccucmp's definitions: n counts every finite pair)
- kl       = msaccucmp's KullbackLeiblerDivergence of the min-max normalised distributions
- min/max/mean/std of each side over its own finite values, NaN/Inf counts of each side.

Each tensor is streamed twice (the fused statistics, then KL, which needs the ranges), so no
full-size temporary is made.

Two implementations, which agree to the tolerances docs/metrics.md states (tests/speed checks it):

- the optional C kernel ``netdiff._fastmetrics`` (built by setup.py when a compiler is there): one
  call per tensor, without the GIL; Σr², Σx², Σrx, Σ(x − r)² exact-product float64 sums, the other
  element-wise work and KL in float32 for all-finite float32/float16 data (fixed lanes: the same
  result at every build level), float64 otherwise; strided inputs are copied slab by slab. It also
  returns per-channel sums that :mod:`netdiff.detail` reuses. ``BUILD_LEVEL`` names its -march level.
- the numpy reference below (``NETDIFF_NO_FASTMETRICS=1`` forces it): cache-sized chunks, every
  element-wise step in float64, pairwise chunk sums accumulated in float64.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from netdiff.types import LayerMetrics

#: msaccucmp's epsilon for relative errors (float64 machine epsilon).
EPS = float(np.finfo(np.float64).eps)
#: f32 epsilon: msaccucmp clips the KL distributions to at least this.
KL_FLOOR = float(np.finfo(np.float32).eps)
CHUNK_ELEMENTS = 1 << 15
#: Elements per contiguous slab copied from a strided (or non-float) input on the fast path.
SLAB_ELEMENTS = 1 << 20
#: Per-channel sums (for detail's channel cosines) are kept for at most this many channels.
MAX_CHANNELS = 512
#: Histogram bins and the most pairs sampled for them (detail data for reports).
HIST_BINS = 48
HIST_SAMPLE = 1 << 16
_NARROW = {"float32", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "bool"}
_KINDS = {"float64": 0, "float32": 1, "float16": 2}


def _load_fast():
    if os.environ.get("NETDIFF_NO_FASTMETRICS"):
        return None
    try:
        from netdiff import _fastmetrics
    except ImportError:
        return None
    return _fastmetrics if _current(_fastmetrics) else None


def _current(kernel) -> bool:
    """False, with a warning, for a kernel built from another version of the source beside it (an
    editable checkout updated without ``pip install -e .``): its numbers could differ from the code's."""
    from netdiff import _buildflags

    digest = _buildflags.source_digest()  # netdiff/_fastmetrics.c beside this module
    if digest is None or getattr(kernel, "SOURCE_DIGEST", None) == digest:
        return True
    import logging

    logging.getLogger("netdiff").warning(
        "netdiff's C kernel was built from an older netdiff/_fastmetrics.c; using the numpy path "
        "(run `pip install -e .` to rebuild it)")
    return False


_fast = _load_fast()
_last = threading.local()


def fast_available() -> bool:
    """True when the C kernel is built and in use (``NETDIFF_NO_FASTMETRICS`` unset)."""
    return _fast is not None


def fast_build_level() -> str | None:
    """The -march level the C kernel in use was built for (``portable``, ``x86-64-v3``, ...), or None."""
    return getattr(_fast, "BUILD_LEVEL", "unknown") if _fast is not None else None


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
    _last.key = None
    if _fast is not None and reference.size:
        return _compute_fast(reference, target, eps)
    acc = _Accumulator(eps)
    for r, x in iter_chunks(reference, target, chunk_elements, np.float64):
        acc.add(r, x)
    kl = _kl_divergence(reference, target, acc, chunk_elements)
    return acc.result(kl)


def _compute_fast(reference: np.ndarray, target: np.ndarray, eps: float) -> LayerMetrics:
    """compute_metrics through the C kernel (same results as the numpy path)."""
    channels, inner = _channel_layout(reference.shape)
    sums = np.zeros(4 * channels) if channels else None
    acc = _Accumulator(eps)
    for r, x, kr, kx, offset in _fast_parts(reference, target):
        _merge(acc, _fast.stats(r, x, kr, kx, eps, sums, channels, inner, offset))
    kl = _kl_fast(reference, target, acc)
    detail: dict = {}
    if sums is not None:
        detail["channel_cosine"] = np.array([_cosine(*sums[c::channels], EPS)[0] for c in range(channels)])  # rr, xx, dd, rx
    if acc.n:
        detail.update(_histograms(reference, target, acc))
    _last.key, _last.detail = _array_key(reference, target), detail
    return acc.result(kl)


def _histograms(reference: np.ndarray, target: np.ndarray, acc: _Accumulator) -> dict:
    """Value histograms of both sides and the error histogram over an evenly strided sample."""
    lo, hi = min(acc.ref.lo, acc.tgt.lo), max(acc.ref.hi, acc.tgt.hi)
    if hi <= lo:
        hi = lo + 1.0
    elo, ehi = acc.dmin, acc.dmax
    if ehi <= elo:
        ehi = elo + 1e-12
    counts = np.zeros((3, HIST_BINS), np.int64)
    step = max(1, -(-reference.size // HIST_SAMPLE))
    taken = sum(_fast.histograms(r, x, kr, kx, lo, hi, elo, ehi, step, counts)
                for r, x, kr, kx, _ in _fast_parts(reference, target))
    return {"histogram": {"edges": [lo, hi], "reference": counts[0].tolist(), "target": counts[1].tolist(),
                          "sampled": int(taken)},
            "error_histogram": {"edges": [elo, ehi], "counts": counts[2].tolist()}}


def _channel_layout(shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, elements per channel block) when per-channel sums are wanted, else (0, 0)."""
    if len(shape) >= 3 and 1 < shape[1] <= MAX_CHANNELS:
        return int(shape[1]), math.prod(shape[2:])
    return 0, 0


def _fast_parts(reference: np.ndarray, target: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, int, int, int]]:
    """Flat C-contiguous (ref, tgt, kind, kind, flat offset) pieces: the arrays themselves when they
    already are, else slab copies in a dtype the kernel reads."""
    kr, kx = _kind(reference), _kind(target)
    if kr is not None and kx is not None and reference.flags.c_contiguous and target.flags.c_contiguous:
        yield reference.reshape(-1), target.reshape(-1), kr, kx, 0
        return
    dtype = work_dtype(reference, target)
    kind = _KINDS[dtype.name]
    offset = 0
    for r, x in iter_chunks(reference, target, SLAB_ELEMENTS, dtype):
        yield r, x, kind, kind, offset
        offset += r.size


def _kind(a: np.ndarray) -> int | None:
    return _KINDS.get(a.dtype.name) if a.dtype.isnative else None


def _merge(acc: _Accumulator, d: dict) -> None:
    """Add one kernel result to the accumulator."""
    acc.count += d["count"]
    acc.n += d["n"]
    acc.rr += d["rr"]
    acc.xx += d["xx"]
    acc.rx += d["rx"]
    acc.dd += d["dd"]
    acc.abs_sum += d["abs_sum"]
    acc.abs_max = max(acc.abs_max, d["abs_max"])
    acc.rel_sum += d["rel_sum"]
    acc.rel_max = max(acc.rel_max, d["rel_max"])
    acc.rel_count += d["rel_count"]
    acc.dmin = min(acc.dmin, d["dmin"])
    acc.dmax = max(acc.dmax, d["dmax"])
    for side, (n, nan, inf, s1, s2, lo, hi) in ((acc.ref, d["ref"]), (acc.tgt, d["tgt"])):
        side.n += n
        side.nan += nan
        side.inf += inf
        side.s1 += s1
        side.s2 += s2
        side.lo = min(side.lo, lo)
        side.hi = max(side.hi, hi)


def _kl_fast(reference: np.ndarray, target: np.ndarray, acc: _Accumulator) -> tuple[float, str | None]:
    if acc.n == 0:
        return math.nan, None
    if math.sqrt(acc.xx) <= acc.eps or math.sqrt(acc.rr) <= acc.eps:
        return math.nan, "KL undefined: a side is all zero"
    rlo, rs = _norm_of(acc.ref)
    xlo, xs = _norm_of(acc.tgt)
    finite = acc.n == acc.count
    sp = sq = cross = 0.0
    for r, x, kr, kx, _ in _fast_parts(reference, target):
        a, b, c = _fast.kl(r, x, kr, kx, rlo, rs, xlo, xs, KL_FLOOR, finite)
        sp, sq, cross = sp + a, sq + b, cross + c
    value = cross / sp - math.log(sp) + math.log(sq)
    return (0.0 if abs(value) < acc.eps else value), None


def _norm_of(side: _SideStats) -> tuple[float, float]:
    """(lo, 1 / (hi − lo)) of the min-max normalisation; (0, 1) leaves a constant side as is."""
    return (side.lo, 1.0 / (side.hi - side.lo)) if side.hi > side.lo else (0.0, 1.0)


def _array_key(a: np.ndarray, b: np.ndarray) -> tuple:
    return tuple((id(v), v.__array_interface__["data"][0], v.shape, v.strides, v.dtype.str) for v in (a, b))


def cached_detail(reference: np.ndarray, target: np.ndarray) -> dict | None:
    """Detail data (channel cosines, histograms) the C kernel gathered in this thread's last
    compute_metrics of these same arrays; handed out once.

    Lets :func:`netdiff.detail.layer_detail` skip its own passes when called right after
    compute_metrics on the same pair (as the pipeline does).
    """
    if getattr(_last, "key", None) is None or _last.key != _array_key(reference, target):
        return None
    _last.key = None
    return _last.detail


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
    rx: float = 0.0
    dd: float = 0.0
    abs_sum: float = 0.0
    abs_max: float = 0.0
    rel_sum: float = 0.0
    rel_max: float = 0.0
    rel_count: int = 0
    dmin: float = math.inf
    dmax: float = -math.inf

    def add(self, r: np.ndarray, x: np.ndarray) -> None:
        """Add one chunk (flat float64 arrays, which this method overwrites)."""
        self.count += r.size
        scratch = np.empty_like(r)
        with np.errstate(over="ignore", invalid="ignore"):
            d = np.subtract(x, r)
            dd = _sum(np.square(d, out=scratch))
            rr = _sum(np.square(r, out=scratch))
            xx = _sum(np.square(x, out=scratch))
            rx = _sum(np.multiply(r, x, out=scratch))
        if math.isfinite(dd + rr + xx):
            self.ref.add(r, rr)
            self.tgt.add(x, xx)
        else:  # NaN/Inf in the data (or squares that overflow): per side, then the finite pairs
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
            rx = _sum(np.multiply(r, x, out=scratch))
        if r.size == 0:
            return
        self.n += r.size
        self.rr += rr
        self.xx += xx
        self.rx += rx
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
        cosine, note = _cosine(self.rr, self.xx, self.dd, self.rx, self.eps) if n else (nan, None)
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


#: cosine switches to the difference formula when ‖x − r‖ ≤ NEAR · min(‖r‖, ‖x‖).
NEAR = 0.5


def cosine_from_sums(rr: float, xx: float, dd: float, rx: float) -> float:
    """Cosine of two vectors from float64 Σr², Σx², Σ(x − r)² and Σrx (both norms non-zero).

    Two regimes, each accurate to a few float64 ulps of the exact cosine:

    - ‖x − r‖ ≤ NEAR·min(‖r‖, ‖x‖) (x ≈ r): cos = 1 − (‖x − r‖² − (‖x‖ − ‖r‖)²) / (2‖r‖‖x‖), which keeps
      1 − cos accurate (relative) when the tensors are nearly identical;
    - otherwise the direct Σrx / (‖r‖‖x‖), exact for scaled (x = k·r: 1), opposite (−1) and orthogonal
      (0) tensors, where the difference formula would cancel catastrophically.

    The result is clipped to [−1, 1].
    """
    rn, xn = math.sqrt(rr), math.sqrt(xx)
    if dd <= (NEAR * NEAR) * min(rr, xx):
        cos = 1.0 - (dd - (xn - rn) ** 2) / (2.0 * rn * xn)
    else:
        cos = rx / (rn * xn)
    return max(min(cos, 1.0), -1.0)


def _cosine(rr: float, xx: float, dd: float, rx: float, eps: float) -> tuple[float, str | None]:
    """cosine_from_sums with msaccucmp's all-zero rules: (cosine, note)."""
    rn, xn = math.sqrt(rr), math.sqrt(xx)
    if rn <= eps and xn <= eps:
        return 1.0, None
    if rn <= eps:
        return math.nan, "reference is all zero: cosine undefined"
    if xn <= eps:
        return math.nan, "target is all zero: cosine undefined"
    return cosine_from_sums(rr, xx, dd, rx), None


def _kl_divergence(reference: np.ndarray, target: np.ndarray, acc: _Accumulator,
                   chunk_elements: int) -> tuple[float, str | None]:
    """msaccucmp's KL(p‖q): p from the target, q from the reference, min-max normalised (float64)."""
    if acc.n == 0:
        return math.nan, None
    if math.sqrt(acc.xx) <= acc.eps or math.sqrt(acc.rr) <= acc.eps:
        return math.nan, "KL undefined: a side is all zero"
    sp = sq = cross = 0.0
    partial = acc.n < acc.count
    for r, x in iter_chunks(reference, target, chunk_elements, np.float64):
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

    Streams one channel at a time in float64; NaN/Inf elements count as zero.
    """
    count = reference.shape[axis]
    cos = np.empty(count)
    for c in range(count):
        r = np.take(reference, c, axis=axis).astype(np.float64).reshape(-1)
        x = np.take(target, c, axis=axis).astype(np.float64).reshape(-1)
        if not (np.isfinite(r).all() and np.isfinite(x).all()):
            r = np.where(np.isfinite(r), r, 0)
            x = np.where(np.isfinite(x), x, 0)
        d = x - r
        cos[c] = _cosine(_sum(np.square(r)), _sum(np.square(x)), _sum(np.square(d)), _sum(r * x), EPS)[0]
    return cos
