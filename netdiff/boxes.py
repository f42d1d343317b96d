"""Detection agreement: two scored box sets matched by IoU (pure numpy).

The reference's and the target's boxes above a score threshold are matched greedily, highest
reference score first, each to the unmatched target box of the same label with the highest IoU
(≥ ``iou_threshold``). The result counts the boxes each side keeps, the matched pairs, the boxes
only the reference keeps (lost) and those only the target keeps (extra), and measures the matched
pairs' score deltas and box offsets.

Boxes are corners ``[x1, y1, x2, y2]`` in any consistent unit (normalised or pixels). Used for
one comparison (netdiff.detection) and summed over a dataset with :meth:`BoxAgreement.combine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BoxAgreement", "iou_matrix", "match_boxes", "match_indexed"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4); (N, M), 0 for degenerate boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.nan_to_num(iou, nan=0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return w * h


@dataclass(frozen=True)
class BoxAgreement:
    """How two box sets agree at one score threshold.

    Attributes:
        score_threshold: Boxes with a score ≥ this were kept.
        iou_threshold: Minimum IoU for a reference and a target box to match.
        reference_kept: Boxes the reference keeps.
        target_kept: Boxes the target keeps.
        matched: Pairs matched by IoU (and label).
        score_deltas: Target minus reference score of each matched pair.
        ious: IoU of each matched pair.
        offsets: Largest absolute corner difference of each matched pair, in box units.
        relative_offsets: Each offset divided by the larger side of the reference box.
        pairs: (reference index, target index) of each pair, in the caller's original indexing.
    """

    score_threshold: float
    iou_threshold: float
    reference_kept: int
    target_kept: int
    matched: int
    score_deltas: tuple[float, ...] = ()
    ious: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    relative_offsets: tuple[float, ...] = ()
    pairs: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def lost(self) -> int:
        """Boxes only the reference keeps."""
        return self.reference_kept - self.matched

    @property
    def extra(self) -> int:
        """Boxes only the target keeps."""
        return self.target_kept - self.matched

    @property
    def agrees(self) -> bool:
        """True when every kept box on either side has a partner."""
        return self.lost == 0 and self.extra == 0

    @property
    def max_score_delta(self) -> float | None:
        """Largest absolute score delta of a matched pair, None without pairs."""
        return float(np.max(np.abs(self.score_deltas))) if self.score_deltas else None

    @property
    def min_iou(self) -> float | None:
        """Lowest IoU of a matched pair, None without pairs."""
        return min(self.ious) if self.ious else None

    @property
    def max_offset(self) -> float | None:
        """Largest corner offset of a matched pair (box units), None without pairs."""
        return max(self.offsets) if self.offsets else None

    @property
    def max_relative_offset(self) -> float | None:
        """Largest corner offset relative to the reference box size, None without pairs."""
        return max(self.relative_offsets) if self.relative_offsets else None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly counts and worst-case numbers (no per-pair lists)."""
        return {
            "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
            "reference_kept": self.reference_kept, "target_kept": self.target_kept,
            "matched": self.matched, "lost": self.lost, "extra": self.extra,
            "max_score_delta": self.max_score_delta,
            "mean_abs_score_delta": float(np.mean(np.abs(self.score_deltas))) if self.score_deltas else None,
            "min_iou": self.min_iou, "max_offset": self.max_offset,
            "max_relative_offset": self.max_relative_offset,
        }

    @classmethod
    def combine(cls, parts: Iterable[BoxAgreement]) -> BoxAgreement:
        """Sum several agreements (e.g. per image or per sample) at the same thresholds; pairs are dropped."""
        parts = list(parts)
        if not parts:
            raise ValueError("combine needs at least one BoxAgreement")
        first = parts[0]
        if any((p.score_threshold, p.iou_threshold) != (first.score_threshold, first.iou_threshold) for p in parts):
            raise ValueError("combine needs agreements at the same score and IoU thresholds")
        return cls(first.score_threshold, first.iou_threshold,
                   reference_kept=sum(p.reference_kept for p in parts),
                   target_kept=sum(p.target_kept for p in parts),
                   matched=sum(p.matched for p in parts),
                   score_deltas=sum((p.score_deltas for p in parts), ()),
                   ious=sum((p.ious for p in parts), ()),
                   offsets=sum((p.offsets for p in parts), ()),
                   relative_offsets=sum((p.relative_offsets for p in parts), ()))


def match_boxes(reference_boxes: np.ndarray, reference_scores: np.ndarray, target_boxes: np.ndarray,
                target_scores: np.ndarray, *, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                reference_labels: Sequence[int] | np.ndarray | None = None,
                target_labels: Sequence[int] | np.ndarray | None = None) -> BoxAgreement:
    """Match the boxes both sides keep at ``score_threshold``.

    Args:
        reference_boxes: (N, 4) corner boxes of the reference.
        reference_scores: (N,) their scores.
        target_boxes: (M, 4) corner boxes of the target.
        target_scores: (M,) their scores.
        score_threshold: A box is kept when its score is ≥ this.
        iou_threshold: A pair matches when its IoU is ≥ this.
        reference_labels: Optional (N,) class labels; pairs then need equal labels.
        target_labels: Optional (M,) class labels (required with ``reference_labels``).

    Returns:
        The agreement; ``pairs`` index the caller's arrays.
    """
    rb, rs = _boxes_scores(reference_boxes, reference_scores, "reference")
    tb, ts = _boxes_scores(target_boxes, target_scores, "target")
    if (reference_labels is None) != (target_labels is None):
        raise ValueError("give labels for both sides or for neither")
    rl = np.zeros(len(rs), np.int64) if reference_labels is None else np.asarray(reference_labels).reshape(-1)
    tl = np.zeros(len(ts), np.int64) if target_labels is None else np.asarray(target_labels).reshape(-1)
    if len(rl) != len(rs) or len(tl) != len(ts):
        raise ValueError("labels must have one entry per box")
    with np.errstate(invalid="ignore"):
        r_idx = np.flatnonzero(rs >= score_threshold)
        t_idx = np.flatnonzero(ts >= score_threshold)
    r_idx = r_idx[np.argsort(-rs[r_idx], kind="stable")]
    iou = iou_matrix(rb[r_idx], tb[t_idx])
    same = rl[r_idx][:, None] == tl[t_idx][None, :]
    iou = np.where(same, iou, 0.0)
    taken = np.zeros(len(t_idx), dtype=bool)
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    for row in range(len(r_idx)):
        candidates = np.where(taken, -1.0, iou[row])
        if not len(candidates):
            break
        col = int(np.argmax(candidates))
        if candidates[col] >= iou_threshold and candidates[col] > 0:
            taken[col] = True
            pairs.append((int(r_idx[row]), int(t_idx[col])))
            ious.append(float(candidates[col]))
    deltas, offsets, relative = [], [], []
    for i, j in pairs:
        deltas.append(float(ts[j] - rs[i]))
        offset = float(np.max(np.abs(tb[j] - rb[i])))
        side = float(max(rb[i, 2] - rb[i, 0], rb[i, 3] - rb[i, 1]))
        offsets.append(offset)
        relative.append(offset / side if side > 0 else float("inf"))
    return BoxAgreement(float(score_threshold), float(iou_threshold), reference_kept=len(r_idx),
                        target_kept=len(t_idx), matched=len(pairs), score_deltas=tuple(deltas),
                        ious=tuple(ious), offsets=tuple(offsets), relative_offsets=tuple(relative),
                        pairs=tuple(pairs))


def match_indexed(reference_keys: np.ndarray, reference_scores: np.ndarray, target_keys: np.ndarray,
                  target_scores: np.ndarray, reference_boxes: np.ndarray | None = None,
                  target_boxes: np.ndarray | None = None, *, score_threshold: float = 0.5,
                  iou_threshold: float = 0.5, corners: bool = True) -> BoxAgreement:
    """Match candidates that are the same slot on both sides (anchor × class of one head), not by IoU.

    A pair is a key both sides keep at ``score_threshold``. With boxes, offsets are measured per pair
    (and IoU when ``corners``: raw box regressions have offsets only).

    Args:
        reference_keys: (N,) distinct integer ids of the reference candidates.
        reference_scores: (N,) their scores.
        target_keys: (M,) ids of the target candidates (same id space).
        target_scores: (M,) their scores.
        reference_boxes: Optional (N, 4) boxes or regressions.
        target_boxes: Optional (M, 4), required with ``reference_boxes``.
        score_threshold: A candidate is kept when its score is ≥ this.
        iou_threshold: Recorded in the result (pairs are matched by key).
        corners: The boxes are corners ``[x1, y1, x2, y2]`` (IoU and relative offsets are measured).
    """
    rk, tk = np.asarray(reference_keys).reshape(-1), np.asarray(target_keys).reshape(-1)
    rs = np.asarray(reference_scores, dtype=np.float64).reshape(-1)
    ts = np.asarray(target_scores, dtype=np.float64).reshape(-1)
    if len(rk) != len(rs) or len(tk) != len(ts):
        raise ValueError("keys and scores must have one entry per candidate")
    with np.errstate(invalid="ignore"):
        r_keep = np.flatnonzero(rs >= score_threshold)
        t_keep = np.flatnonzero(ts >= score_threshold)
    t_pos = {int(k): int(i) for k, i in zip(tk[t_keep], t_keep)}
    order = r_keep[np.argsort(-rs[r_keep], kind="stable")]
    pairs = [(int(i), t_pos[int(rk[i])]) for i in order if int(rk[i]) in t_pos]
    deltas = tuple(float(ts[j] - rs[i]) for i, j in pairs)
    ious: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    relative: tuple[float, ...] = ()
    if reference_boxes is not None and target_boxes is not None and pairs:
        rb = np.asarray(reference_boxes, dtype=np.float64).reshape(-1, 4)
        tb = np.asarray(target_boxes, dtype=np.float64).reshape(-1, 4)
        ri, ti = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        offsets = tuple(float(v) for v in np.max(np.abs(tb[ti] - rb[ri]), axis=1))
        if corners:
            ious = tuple(float(iou_matrix(rb[i:i + 1], tb[j:j + 1])[0, 0]) for i, j in pairs)
            side = np.maximum(rb[ri, 2] - rb[ri, 0], rb[ri, 3] - rb[ri, 1])
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = tuple(float(o / s) if s > 0 else float("inf") for o, s in zip(offsets, side))
    return BoxAgreement(float(score_threshold), float(iou_threshold), reference_kept=len(r_keep),
                        target_kept=len(t_keep), matched=len(pairs), score_deltas=deltas, ious=ious,
                        offsets=offsets, relative_offsets=relative, pairs=tuple(pairs))


def _boxes_scores(boxes: np.ndarray, scores: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.size % 4 or b.size // 4 != s.size:
        raise ValueError(f"{side}: {s.size} scores need {s.size} boxes of 4 corners, got shape {list(b.shape)}")
    return b.reshape(-1, 4), s
