"""Detector heads and detection-level comparison: which boxes each side keeps at a score threshold.

A *head* is found in the reference dump by structure and semantics, never by name:

- ``detection_output``: a Caffe DetectionOutput (or any NMS output) of rows
  ``[image, label, score, x1, y1, x2, y2]``; compared as box sets matched by IoU, whatever their lengths.
- ``anchors``: a Softmax/Sigmoid score tensor near the outputs (reached from a graph output or a
  DetectionOutput input through shape-only ops) with a class axis and at least two anchors
  (positions), and a box tensor near the outputs with 4 values per anchor (slim/RFB ``scores`` +
  ``boxes``, SSD ``mbox_conf`` + ``mbox_loc``, a dense [N, C, H, W] map + [N, 4, H, W] regression
  such as MTCNN P-Net). A Softmax's class 0 is the background column and is excluded; Sigmoid
  scores have none. Compared anchor by anchor (the same anchor on both sides).
- ``yolo``: a graph output [N, A, 5 + C] whose objectness and class columns are probabilities;
  score = objectness × class, boxes from centre/size.

A classifier (one position per image, or no box tensor) is never a head. Results go into
``report.meta["detection"]`` (docs/json-report.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from netdiff.boxes import BoxAgreement, match_boxes, match_indexed
from netdiff.types import Dump, LayerResult, Report

#: Ops that only move or reshape values: a score tensor behind them is still "at the output".
SHAPE_OPS = frozenset({"Reshape", "Flatten", "Permute", "Transpose", "Concat", "Squeeze", "Unsqueeze",
                       "Identity", "Split", "Slice", "Gather"})
ACTIVATIONS = frozenset({"Softmax", "Sigmoid"})
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectionHead:
    """A detector output found in the reference.

    Attributes:
        kind: "detection_output", "anchors" or "yolo".
        scores: Reference tensor holding the scores (the whole rows for detection_output / yolo).
        boxes: Reference tensor holding the boxes or box regressions, or None.
        classes: Classes on the class axis (background included).
        background: Background column/label excluded from the scores, or None.
        class_axis: Axis of ``scores`` holding the classes (anchors only).
        box_axis: Axis of ``boxes`` holding the 4 coordinates (anchors only).
        decoded: True when the boxes are corners (offsets in box units), False for raw regressions.
        feeds: The detection_output head this head feeds, or None.
        why: The structure that makes it a head (one sentence).
    """

    kind: str
    scores: str
    boxes: str | None = None
    classes: int = 0
    background: int | None = None
    class_axis: int = -1
    box_axis: int = -1
    decoded: bool = True
    feeds: str | None = None
    why: str = ""

    def candidates(self, scores: np.ndarray, boxes: np.ndarray | None, image: int) -> _Candidates:
        """The (anchor or row, class) candidates of one image of one side."""
        if self.kind == "detection_output":
            rows = np.asarray(scores, dtype=np.float64).reshape(-1, 7)
            rows = rows[(rows[:, 0] == image) & (rows[:, 1] >= 0)]
            return _Candidates(np.arange(len(rows)), rows[:, 1].astype(np.int64), rows[:, 2], rows[:, 3:7])
        if self.kind == "yolo":
            arr = np.asarray(scores, dtype=np.float64)[image]
            cls = arr[:, 5:] * arr[:, 4:5]
            cx, cy, w, h = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
            corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            return _Candidates.grid(cls, corners, None)
        s = np.moveaxis(np.asarray(scores, dtype=np.float64), self.class_axis, -1)[image].reshape(-1, self.classes)
        b = None
        if boxes is not None:
            b = np.moveaxis(np.asarray(boxes, dtype=np.float64), self.box_axis, -1)[image].reshape(-1, 4)
        return _Candidates.grid(s, b, self.background)


@dataclass(frozen=True)
class _Candidates:
    ids: np.ndarray      # anchor/row index of each candidate
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray | None

    @classmethod
    def grid(cls, scores: np.ndarray, boxes: np.ndarray | None, background: int | None) -> _Candidates:
        anchors, classes = scores.shape
        labels = np.tile(np.arange(classes), anchors)
        ids = np.repeat(np.arange(anchors), classes)
        flat = scores.reshape(-1)
        keep = labels != background if background is not None else np.ones(flat.shape, bool)
        box = boxes[ids[keep]] if boxes is not None else None
        return cls(ids[keep], labels[keep], flat[keep], box)


# ---------------------------------------------------------------- finding heads in a reference


def find_heads(reference: Dump) -> list[DetectionHead]:
    """The detector heads of a reference dump (empty for classifiers and other nets)."""
    consumers = _consumers(reference)
    near = _near_outputs(reference, consumers)
    heads: list[DetectionHead] = []
    used: set[str] = set()
    for t in reference:
        if t.op_type == "DetectionOutput" and t.shape and t.shape[-1] == 7:
            heads.append(DetectionHead("detection_output", t.name, classes=_detection_classes(t),
                                       why="DetectionOutput rows [image, label, score, x1, y1, x2, y2]"))
            near.update(_upstream_shape_chain(reference, t.inputs))
    det_inputs = {n: t.name for t in reference if t.op_type == "DetectionOutput" for n in
                  _upstream_shape_chain(reference, t.inputs)}
    for name in sorted(near, key=lambda n: reference[n].order if reference[n].order is not None else 1 << 30):
        t = reference[name]
        if t.op_type not in ACTIVATIONS or name in used:
            continue
        head = _anchor_head(reference, name, near, det_inputs)
        if head is not None:
            heads.append(head)
            used.update({head.scores, head.boxes or ""})
    for name in reference.graph_outputs:
        if name in used or name not in reference:
            continue
        head = _yolo_head(reference, name)
        if head is not None:
            heads.append(head)
    return heads


def _consumers(dump: Dump) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in dump:
        for i in t.inputs:
            out.setdefault(i, []).append(t.name)
    return out


def _near_outputs(dump: Dump, consumers: Mapping[str, list[str]]) -> set[str]:
    """Graph outputs and every tensor reaching one through shape-only ops."""
    return _upstream_shape_chain(dump, [n for n in dump.graph_outputs if n in dump])


def _upstream_shape_chain(dump: Dump, names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = [n for n in names if n in dump]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        t = dump[name]
        if t.op_type in SHAPE_OPS:
            stack.extend(i for i in t.inputs if i in dump)
    return seen


def _detection_classes(t: Any) -> int:
    try:
        rows = np.asarray(t.load()).reshape(-1, 7)
        labels = rows[rows[:, 1] >= 0, 1]
        return int(labels.max()) + 1 if labels.size else 0
    except (ValueError, OSError):
        return 0


def _class_axis(name: str, op: str, values: np.ndarray) -> int | None:
    """The class axis of a score tensor (sums to 1 for a Softmax; the short axis for a Sigmoid)."""
    if values.ndim < 2:
        return None
    if op == "Softmax":
        for axis in range(values.ndim - 1, 0, -1):
            if values.shape[axis] >= 2 and np.allclose(values.sum(axis=axis, dtype=np.float64), 1.0, atol=1e-3):
                return axis
        return None
    if values.ndim == 3:
        return 2 if values.shape[2] <= values.shape[1] else 1
    return 1


def _anchor_head(reference: Dump, name: str, near: set[str], det_inputs: Mapping[str, str]) -> DetectionHead | None:
    t = reference[name]
    try:
        values = np.asarray(t.load())
    except Exception:  # unreadable tensor: the layer carries status "error"
        return None
    axis = _class_axis(name, t.op_type or "", values)
    if axis is None or values.shape[0] == 0:
        return None
    batch, classes = values.shape[0], values.shape[axis]
    anchors = values.size // (batch * classes)
    if anchors < 2:
        return None  # one position per image: a classifier
    boxes = _box_partner(reference, name, near, batch, anchors, values.shape, axis)
    if boxes is None:
        return None
    box_name, box_axis, decoded = boxes
    background = 0 if t.op_type == "Softmax" else None
    return DetectionHead("anchors", name, box_name, classes=classes, background=background, class_axis=axis,
                         box_axis=box_axis, decoded=decoded, feeds=det_inputs.get(name),
                         why=f"{t.op_type} over {classes} classes (axis {axis}) at {anchors} anchors, "
                             f"with {box_name!r} holding 4 box values per anchor")


def _box_partner(reference: Dump, scores: str, near: set[str], batch: int, anchors: int,
                 score_shape: tuple[int, ...], class_axis: int) -> tuple[str, int, bool] | None:
    ordered = [n for n in reference.graph_outputs if n in near] + sorted(near - set(reference.graph_outputs))
    for name in ordered:
        if name == scores or name not in reference:
            continue
        t = reference[name]
        shape = tuple(t.shape)
        if not shape or shape[0] != batch or t.size != batch * anchors * 4 or t.op_type in ACTIVATIONS:
            continue
        if len(shape) >= 3 and shape[-1] == 4:
            axis = len(shape) - 1
        elif len(score_shape) == 4 and len(shape) == 4 and class_axis == 1 and shape[1] == 4 \
                and shape[2:] == score_shape[2:]:
            axis = 1  # dense map: [N, 4, H, W] beside [N, C, H, W]
        elif len(shape) == 2:
            axis = -1  # flat [N, A*4] (SSD mbox_loc): anchors major, coordinates minor
        else:
            continue
        try:
            b = np.moveaxis(np.asarray(t.load(), dtype=np.float64), axis, -1).reshape(-1, 4)
        except Exception:
            continue
        decoded = bool(np.mean((b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])) >= 0.99)
        return name, axis, decoded
    return None


def _yolo_head(reference: Dump, name: str) -> DetectionHead | None:
    t = reference[name]
    if len(t.shape) != 3 or t.shape[1] < 100 or t.shape[2] < 6 or t.op_type in ACTIVATIONS:
        return None
    try:
        values = np.asarray(t.load(), dtype=np.float64)
    except Exception:
        return None
    probs = values[..., 4:]
    if not np.all(np.isfinite(values)) or probs.min() < 0 or probs.max() > 1 or values[..., 2:4].min() < 0:
        return None
    return DetectionHead("yolo", name, name, classes=t.shape[2] - 5, why=f"[N, {t.shape[1]}, 5 + {t.shape[2] - 5}] "
                         "rows of centre, size, objectness and class probabilities (score = objectness × class)")


# ---------------------------------------------------------------- comparing both sides


def compare_detections(report: Report, reference: Dump, target: Dump, *,
                       score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                       iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> list[dict[str, Any]]:
    """Compare every head's detections; fill ``report.meta["detection"]`` and return it.

    A DetectionOutput layer whose lengths differ (status shape_mismatch) is re-judged as a box set:
    ok when every kept box has a partner, diverged otherwise.
    """
    heads = find_heads(reference)
    layers = {layer.name: layer for layer in report.layers}
    results = []
    for head in heads:
        entry: dict[str, Any] = {k: v for k, v in asdict(head).items() if v is not None}
        entry["matched_by"] = "iou" if head.kind == "detection_output" else "anchor"
        agreement, reason, extra = _compare_head(head, layers, reference, target, score_threshold, iou_threshold)
        if agreement is None:
            entry["compared"] = False
            entry["reason"] = reason
        else:
            entry.update({"compared": True, **agreement.summary(), **extra})
            _rejudge_box_set(head, layers.get(head.scores), agreement)
        results.append(entry)
    if results:
        report.meta["detection"] = results
    return results


def _compare_head(head: DetectionHead, layers: Mapping[str, LayerResult], reference: Dump, target: Dump,
                  score_threshold: float, iou_threshold: float) -> tuple[BoxAgreement | None, str, dict[str, Any]]:
    ref_scores = np.asarray(reference[head.scores].load())
    ref_boxes = np.asarray(reference[head.boxes].load()) if head.boxes and head.boxes != head.scores else None
    tgt_scores = _target_array(layers.get(head.scores), target, head.kind == "detection_output")
    if tgt_scores is None:
        return None, f"the target has no aligned {head.scores!r}", {}
    tgt_boxes = None
    if ref_boxes is not None:
        tgt_boxes = _target_array(layers.get(head.boxes or ""), target, False)
    images = int(ref_scores.reshape(-1, 7)[:, 0].max()) + 1 if head.kind == "detection_output" else ref_scores.shape[0]
    parts, best_ref, best_tgt = [], -np.inf, -np.inf
    for image in range(max(images, 1)):
        r = head.candidates(ref_scores, ref_boxes, image)
        t = head.candidates(tgt_scores, tgt_boxes, image)
        best_ref = max(best_ref, float(np.max(r.scores)) if r.scores.size else -np.inf)
        best_tgt = max(best_tgt, float(np.nanmax(t.scores)) if t.scores.size else -np.inf)
        parts.append(_match(head, r, t, score_threshold, iou_threshold))
    extra = {"reference_max": best_ref if np.isfinite(best_ref) else None,
             "target_max": best_tgt if np.isfinite(best_tgt) else None,
             "box_offsets": "box units" if head.decoded else "raw regression units" if head.boxes else None}
    if head.boxes and tgt_boxes is None and head.kind == "anchors":
        extra["box_offsets"] = None
    return BoxAgreement.combine(parts), "", extra


def _match(head: DetectionHead, r: _Candidates, t: _Candidates, score_threshold: float,
           iou_threshold: float) -> BoxAgreement:
    if head.kind == "detection_output":
        return match_boxes(r.boxes, r.scores, t.boxes, t.scores, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, reference_labels=r.labels, target_labels=t.labels)
    ref_keys = r.ids * max(head.classes, 1) + r.labels
    tgt_keys = t.ids * max(head.classes, 1) + t.labels
    return match_indexed(ref_keys, r.scores, tgt_keys, t.scores, r.boxes, t.boxes if r.boxes is not None else None,
                         score_threshold=score_threshold, iou_threshold=iou_threshold, corners=head.decoded)


def _target_array(layer: LayerResult | None, target: Dump, raw: bool) -> np.ndarray | None:
    """The target's tensor aligned with a reference layer (in the reference's shape unless ``raw``)."""
    if layer is None or layer.target_name is None or layer.target_name not in target:
        return None
    try:
        value = np.asarray(target[layer.target_name].load())
        if raw:
            return value if value.size % 7 == 0 else None
        if layer.match is None or layer.match.transform is None or layer.shape is None:
            return None
        return np.asarray(layer.match.transform.apply(value, tuple(layer.shape)))
    except Exception:  # unreadable or irreconcilable: the layer already says why
        return None


def _rejudge_box_set(head: DetectionHead, layer: LayerResult | None, agreement: BoxAgreement) -> None:
    if head.kind != "detection_output" or layer is None or layer.status != "shape_mismatch":
        return
    layer.status = "ok" if agreement.agrees else "diverged"
    layer.reason = (f"compared as box sets (lengths differ): {agreement.reference_kept} reference and "
                    f"{agreement.target_kept} target boxes at score ≥ {agreement.score_threshold:g}, "
                    f"{agreement.matched} matched (IoU ≥ {agreement.iou_threshold:g}), "
                    f"{agreement.lost} lost, {agreement.extra} extra")
    layer.extra["detection"] = agreement.summary()


def summary_line(entry: Mapping[str, Any]) -> str:
    """One line per head for the terminal and HTML reports (from a ``meta["detection"]`` entry)."""
    kind = {"detection_output": "box set", "anchors": "anchors", "yolo": "rows"}.get(str(entry.get("kind")), "head")
    head = str(entry.get("scores"))
    if entry.get("boxes") and entry.get("boxes") != entry.get("scores"):
        head += f" + {entry['boxes']}"
    background = entry.get("background")
    bg = f", background {background} excluded" if background is not None else ""
    if not entry.get("compared"):
        return f"{head} ({kind}{bg}): not compared, {entry.get('reason', '')}"
    text = (f"{head} ({kind}{bg}) at score ≥ {_g(entry.get('score_threshold'))}: reference {entry.get('reference_kept')}, "
            f"target {entry.get('target_kept')}; matched {entry.get('matched')}, lost {entry.get('lost')}, "
            f"extra {entry.get('extra')}")
    if entry.get("max_score_delta") is not None:
        text += f"; max |Δscore| {_g(entry['max_score_delta'])}"
    if entry.get("max_offset") is not None:
        unit = entry.get("box_offsets") or "box units"
        text += f"; max box offset {_g(entry['max_offset'])} ({unit})"
    if entry.get("min_iou") is not None:
        text += f"; min IoU {_g(entry['min_iou'])}"
    if entry.get("reference_max") is not None and entry.get("target_max") is not None:
        text += f"; best score {_score(entry['reference_max'])} vs {_score(entry['target_max'])}"
    return text


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and abs(value) < 10 else _g(value)


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
