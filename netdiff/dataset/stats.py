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


def _low(value: float, nan: float = -math.inf) -> float:
    return nan if math.isnan(value) else value


def _clamp(value: float, low: float, high: float) -> float | None:
    """A histogram quantile kept within the exact extremes (None when undefined)."""
    if math.isnan(value) or math.isnan(low) or math.isnan(high):
        return None
    return min(max(value, low), high)
