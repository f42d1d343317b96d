"""Streaming per-layer statistics over samples, in memory independent of the number of samples.

Mean, worst and diverging counts are exact; the tail quantiles (p5 of cosine, p95 of rel_l2)
come from a fixed log-spaced histogram of ``1 - cosine`` / ``rel_l2`` (40 bins per decade,
so a quantile is exact to within 6 % of ``1 - cosine``, and never reported better than it is:
the bin's bad edge is returned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Histogram of ``1 - cosine`` and of ``rel_l2``: bin 0 holds values <= LOW, the last one >= HIGH.
LOW, HIGH, PER_DECADE = 1e-9, 1e3, 40
_DECADES = math.log10(HIGH / LOW)
BINS = int(round(_DECADES * PER_DECADE)) + 2
#: Diverging sample ids kept per layer (the count is exact).
KEEP_IDS = 50


def log_bin(value: float) -> int:
    """Histogram bin of a non-negative value (NaN goes to the last, worst bin)."""
    if not value > LOW:
        return BINS - 1 if math.isnan(value) else 0
    if value >= HIGH:
        return BINS - 1
    return 1 + min(BINS - 3, int(math.log10(value / LOW) * PER_DECADE))


def log_bins(values: np.ndarray) -> np.ndarray:
    """:func:`log_bin` of every value at once (the same bins: a value within 1e-9 of a bin edge,
    where numpy's log10 and math.log10 may round apart, goes through :func:`log_bin`)."""
    v = np.asarray(values, np.float64)
    out = np.where(np.isnan(v) | (v >= HIGH), BINS - 1, 0)
    mid = np.flatnonzero((v > LOW) & (v < HIGH))
    if mid.size:
        x = np.log10(v.flat[mid] / LOW) * PER_DECADE
        bins = 1 + np.minimum(BINS - 3, x.astype(np.int64))
        for k in np.flatnonzero(np.abs(x - np.rint(x)) < 1e-9).tolist():
            bins[k] = log_bin(float(v.flat[mid[k]]))
        out.flat[mid] = bins
    return out


def bin_upper(index: int) -> float:
    """The upper (bad) edge of a bin."""
    if index == 0:
        return 0.0  # within LOW of exact: shown as exact
    if index >= BINS - 1:
        return math.inf
    return LOW * 10 ** (index / PER_DECADE)


def upper_quantile(counts: np.ndarray, q: float) -> float:
    """The value below which a fraction ``q`` of the counted values lie (bin's upper edge)."""
    total = int(counts.sum())
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(np.cumsum(counts), rank))
    return bin_upper(index)


@dataclass
class LayerStats:
    """Running statistics of one layer over the samples seen so far."""

    count: int = 0
    nan: int = 0
    sum_cosine: float = 0.0
    sum_rel_l2: float = 0.0
    worst_cosine: float = math.inf
    worst_sample: str | None = None
    worst_rel_l2: float = -math.inf
    worst_rel_l2_sample: str | None = None
    diverged: int = 0
    diverged_ids: list[str] = field(default_factory=list)
    noisy: int = 0
    first_divergence: int = 0
    first_divergence_worst: tuple[float, str] | None = None
    cosine_hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    rel_hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def add(self, sample: str, cosine: float, rel_l2: float, status: str, first: bool) -> None:
        """Count one sample's value of this layer (samples in a fixed order: results are deterministic)."""
        self.count += 1
        if status == "diverged":
            self.diverged += 1
            if len(self.diverged_ids) < KEEP_IDS:
                self.diverged_ids.append(sample)
        elif status == "noisy":
            self.noisy += 1
        if first:
            self.first_divergence += 1
            key = (_low(cosine), sample)
            if self.first_divergence_worst is None or key[0] < self.first_divergence_worst[0]:
                self.first_divergence_worst = key
        self.cosine_hist[log_bin(1.0 - cosine if not math.isnan(cosine) else math.nan)] += 1
        self.rel_hist[log_bin(rel_l2)] += 1
        if math.isnan(cosine) or math.isnan(rel_l2):
            self.nan += 1
        else:
            self.sum_cosine += cosine
            self.sum_rel_l2 += rel_l2
        if _low(cosine) < _low(self.worst_cosine) or self.worst_sample is None:
            self.worst_cosine, self.worst_sample = cosine, sample
        rel = math.inf if math.isnan(rel_l2) else rel_l2
        if rel > self.worst_rel_l2:
            self.worst_rel_l2, self.worst_rel_l2_sample = rel, sample

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``layer.extra["samples"]`` (docs/json-report.md)."""
        finite = self.count - self.nan
        return {
            "count": self.count,
            "mean_cosine": self.sum_cosine / finite if finite else None,
            "p5_cosine": _clamp(1.0 - upper_quantile(self.cosine_hist, 0.95), _low(self.worst_cosine, -1.0), 1.0)
            if self.count else None,
            "worst_cosine": self.worst_cosine if self.count else None,
            "worst_sample": self.worst_sample,
            "mean_rel_l2": self.sum_rel_l2 / finite if finite else None,
            "p95_rel_l2": _clamp(upper_quantile(self.rel_hist, 0.95), 0.0, self.worst_rel_l2) if self.count else None,
            "worst_rel_l2": self.worst_rel_l2 if self.count else None,
            "worst_rel_l2_sample": self.worst_rel_l2_sample,
            "diverged": self.diverged,
            "diverged_in": list(self.diverged_ids),
            "noisy": self.noisy,
            "undefined": self.nan,
            "first_divergence_of": self.first_divergence,
        }


class LayerTable:
    """The :class:`LayerStats` of every layer, folded a block of samples at a time in numpy (the
    same numbers as :meth:`LayerStats.add` sample by sample: sums accumulated in sample order, the
    first worst sample kept)."""

    def __init__(self, layers: int) -> None:
        self.n = layers
        self.count = 0
        self.nan = np.zeros(layers, np.int64)
        self.sum_cosine = np.zeros(layers)
        self.sum_rel_l2 = np.zeros(layers)
        self.worst_low = np.full(layers, math.inf)  # worst cosine with NaN as -inf
        self.worst_cosine = np.full(layers, math.inf)
        self.worst_sample: list[str | None] = [None] * layers
        self.worst_rel_l2 = np.full(layers, -math.inf)
        self.worst_rel_l2_sample: list[str | None] = [None] * layers
        self.diverged = np.zeros(layers, np.int64)
        self.diverged_ids: list[list[str]] = [[] for _ in range(layers)]
        self.noisy = np.zeros(layers, np.int64)
        self.first_divergence = np.zeros(layers, np.int64)
        self.first_divergence_worst: list[tuple[float, str] | None] = [None] * layers
        self.hist = np.zeros((2, layers, BINS), np.int64)  # 1 - cosine, rel_l2

    def add_block(self, ids: list[str], cosine: np.ndarray, rel_l2: np.ndarray, status: list[list[str]],
                  firsts: list[int | None]) -> None:
        """Count samples (in sample order): ``cosine`` and ``rel_l2`` are (samples, layers)."""
        b, n = cosine.shape
        if not b:
            return
        self.count += b
        diverged = np.array([[x == "diverged" for x in row] for row in status], bool).reshape(b, n)
        noisy = np.array([[x == "noisy" for x in row] for row in status], bool).reshape(b, n)
        self.diverged += diverged.sum(axis=0)
        self.noisy += noisy.sum(axis=0)
        for i in np.flatnonzero(diverged.any(axis=0)).tolist():
            kept = self.diverged_ids[i]
            if len(kept) < KEEP_IDS:
                kept.extend(ids[k] for k in np.flatnonzero(diverged[:, i])[:KEEP_IDS - len(kept)].tolist())
        for k, first in enumerate(firsts):
            if first is not None:
                self.first_divergence[first] += 1
                key = (_low(float(cosine[k, first])), ids[k])
                worst = self.first_divergence_worst[first]
                if worst is None or key[0] < worst[0]:
                    self.first_divergence_worst[first] = key
        cos_nan, rel_nan = np.isnan(cosine), np.isnan(rel_l2)
        undefined = cos_nan | rel_nan
        self.nan += undefined.sum(axis=0)
        # sums in sample order (cumsum adds row after row; an undefined sample adds exactly 0.0)
        self.sum_cosine = np.cumsum(np.vstack([self.sum_cosine, np.where(undefined, 0.0, cosine)]), axis=0)[-1]
        self.sum_rel_l2 = np.cumsum(np.vstack([self.sum_rel_l2, np.where(undefined, 0.0, rel_l2)]), axis=0)[-1]
        low = np.where(cos_nan, -math.inf, cosine)
        at = low.argmin(axis=0)  # first sample of the lowest
        cols = np.arange(n)
        lowest = low[at, cols]
        for i in np.flatnonzero((lowest < self.worst_low) | np.array([w is None for w in self.worst_sample])).tolist():
            self.worst_low[i], self.worst_cosine[i] = lowest[i], cosine[at[i], i]
            self.worst_sample[i] = ids[at[i]]
        rel = np.where(rel_nan, math.inf, rel_l2)
        at = rel.argmax(axis=0)
        highest = rel[at, cols]
        for i in np.flatnonzero(highest > self.worst_rel_l2).tolist():
            self.worst_rel_l2[i], self.worst_rel_l2_sample[i] = highest[i], ids[at[i]]
        bins = np.stack([log_bins(1.0 - cosine), log_bins(rel_l2)])  # (2, samples, layers); NaN: the last bin
        flat = (np.arange(2)[:, None, None] * n + cols[None, None, :]) * BINS + bins
        self.hist += np.bincount(flat.ravel(), minlength=2 * n * BINS).reshape(2, n, BINS)

    def layer(self, i: int) -> LayerStats:
        """Layer ``i``'s statistics so far."""
        worst = float(self.worst_cosine[i]) if self.worst_sample[i] is not None else math.inf
        return LayerStats(self.count, int(self.nan[i]), float(self.sum_cosine[i]), float(self.sum_rel_l2[i]), worst,
                          self.worst_sample[i], float(self.worst_rel_l2[i]), self.worst_rel_l2_sample[i],
                          int(self.diverged[i]), list(self.diverged_ids[i]), int(self.noisy[i]),
                          int(self.first_divergence[i]), self.first_divergence_worst[i],
                          self.hist[0, i].copy(), self.hist[1, i].copy())


def _low(value: float, nan: float = -math.inf) -> float:
    return nan if math.isnan(value) else value


def _clamp(value: float, low: float, high: float) -> float | None:
    """A histogram quantile kept within the exact extremes (None when undefined)."""
    if math.isnan(value) or math.isnan(low) or math.isnan(high):
        return None
    return min(max(value, low), high)
