"""Small, downsampled per-layer data for rich reports: histograms, channel cosines, error heatmap.

Stored in ``LayerResult.extra["detail"]`` and in the JSON report, so an HTML report can be
re-rendered from the JSON alone. Kept small (a few KB per layer). When the C kernel measured the
same pair just before (``compute_metrics``), its histograms and channel cosines are reused, so the
detail costs no extra pass over the data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdiff.metrics import HIST_BINS, HIST_SAMPLE, MAX_CHANNELS, cached_detail, channel_cosines

BINS = HIST_BINS
HEATMAP = 32
SAMPLE = HIST_SAMPLE


def layer_detail(reference: np.ndarray, target: np.ndarray, heatmap: bool = True) -> dict[str, Any]:
    """Histograms of both sides and of the error, per-channel cosine, worst-channel error heatmap.

    Args:
        reference: Reference array.
        target: Target array aligned to the reference's shape.
        heatmap: Also keep the error heatmap of the worst channel (worth it for diverged layers).
    """
    cached = cached_detail(reference, target)
    detail: dict[str, Any] = {}
    if cached is not None:
        detail.update({k: v for k, v in cached.items() if k != "channel_cosine"})
    else:
        detail.update(_histograms(reference, target))
    if reference.ndim >= 3 and 1 < reference.shape[1] <= MAX_CHANNELS:
        cos = cached.get("channel_cosine") if cached is not None else None
        if cos is None:
            cos = channel_cosines(reference, target, axis=1)
        detail["channel_cosine"] = [None if math.isnan(c) else round(float(c), 5) for c in cos]
        if heatmap:
            worst = int(np.nanargmin(np.where(np.isnan(cos), -2.0, cos)))
            detail["heatmap"] = _heatmap(reference, target, worst)
    return detail


def _histograms(reference: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """numpy histograms over an evenly strided sample (used when the C kernel did not run)."""
    r = _sample(reference)
    x = _sample(target)
    keep = np.isfinite(r) & np.isfinite(x)
    r, x = r[keep], x[keep]
    if not r.size:
        return {}
    lo = float(min(r.min(), x.min()))
    hi = float(max(r.max(), x.max()))
    if hi <= lo:
        hi = lo + 1.0
    err = x - r
    elo, ehi = float(err.min()), float(err.max())
    if ehi <= elo:
        ehi = elo + 1e-12
    return {
        "histogram": {
            "edges": [lo, hi],
            "reference": np.histogram(r, BINS, (lo, hi))[0].tolist(),
            "target": np.histogram(x, BINS, (lo, hi))[0].tolist(),
            "sampled": int(r.size),
        },
        "error_histogram": {"edges": [elo, ehi], "counts": np.histogram(err, BINS, (elo, ehi))[0].tolist()},
    }


def _sample(a: np.ndarray) -> np.ndarray:
    """An evenly strided sample of at most SAMPLE elements, taken as a view (no full-size copy)."""
    a = np.asarray(a)
    steps = [1] * a.ndim
    while a.ndim and math.prod(-(-d // s) for d, s in zip(a.shape, steps)) > SAMPLE:
        axis = max(range(a.ndim), key=lambda i: -(-a.shape[i] // steps[i]))
        steps[axis] *= 2
    view = a[tuple(slice(None, None, s) for s in steps)] if a.ndim else a
    return view.astype(np.float64).reshape(-1)


def _heatmap(reference: np.ndarray, target: np.ndarray, channel: int) -> dict[str, Any] | None:
    """|error| of one channel (first batch item), spatially downsampled to at most 32x32 by max."""
    r = np.asarray(reference[0, channel], dtype=np.float64)
    x = np.asarray(target[0, channel], dtype=np.float64)
    while r.ndim > 2:
        r, x = r[0], x[0]
    if r.ndim == 1:
        r, x = r[None], x[None]
    err = np.abs(np.nan_to_num(x - r, nan=np.inf))
    h, w = err.shape
    sh, sw = max(1, math.ceil(h / HEATMAP)), max(1, math.ceil(w / HEATMAP))
    ph, pw = math.ceil(h / sh) * sh, math.ceil(w / sw) * sw
    padded = np.zeros((ph, pw))
    padded[:h, :w] = err
    pooled = padded.reshape(ph // sh, sh, pw // sw, sw).max(axis=(1, 3))
    top = float(pooled[np.isfinite(pooled)].max()) if np.isfinite(pooled).any() else 0.0
    return {"channel": channel, "shape": [h, w], "max": top,
            "values": [[float(f"{v:.4g}") if math.isfinite(v) else None for v in row] for row in pooled]}
