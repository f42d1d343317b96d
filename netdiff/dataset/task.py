"""Task-level agreement over samples: does the converted model give the same answer?

Each reference graph output is judged as one of:

- ``classification``: a class-score vector (one non-1 dimension of at least 2 values) produced
  by Softmax/LogSoftmax, holding probabilities on the first sample (in [0, 1], summing to 1), or of
  at least 10 values (logits). Per sample: both sides' top-1 class
  and margin (top-1 minus top-2 score, on each side's own scores), whether the reference's class
  is in the target's top 5. Over samples: top-1 / top-5 agreement, the flipped samples, the
  confusion of flips, and with labels the accuracy of both sides.
- ``detection``: an output of a detector head that :mod:`netdiff.detection` finds (scores and
  boxes): boxes kept / matched / lost / extra at IoU ≥ 0.5 and ``--score-threshold``
  (:mod:`netdiff.boxes`), per sample and summed.
- ``other``: the output's cosine / rel_l2 distribution (the layer statistics).

The inferred kind is overridden with ``--task KIND`` (every output) or ``--task OUTPUT=KIND``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import InputError
from netdiff.types import Report

KINDS = ("classification", "detection", "other")
_SOFTMAX = ("Softmax", "LogSoftmax")


def parse_task_args(values: Sequence[str] | None) -> dict[str, str]:
    """``--task`` values as {output or "*": kind}."""
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, kind = value.rpartition("=")
        key, kind = (name.strip(), kind.strip().lower()) if sep else ("*", value.strip().lower())
        if kind not in KINDS:
            raise InputError(f"--task {value!r}: the kind must be one of {', '.join(KINDS)}")
        out[key] = kind
    return out


def infer_tasks(report: Report, plan_names: Sequence[str], overrides: Mapping[str, str] | None = None,
                heads: Sequence[Any] = ()) -> list[Any]:
    """The task of each compared reference graph output, from its producer and shape, the detector
    ``heads`` found in the first sample (or ``overrides``)."""
    from netdiff.dataset.evaluate import OutputTask

    overrides = dict(overrides or {})
    index = {n: i for i, n in enumerate(plan_names)}
    outputs = [n for n in report.meta.get("graph_outputs", []) if n in index]
    unknown = [n for n in overrides if n != "*" and n not in outputs]
    if unknown:
        raise InputError(f"--task: {', '.join(unknown)} is not a compared graph output "
                         f"(outputs: {', '.join(outputs) or 'none'})")
    detection = {n: h.scores for h in heads for n in (h.scores, h.boxes) if n}
    tasks = []
    for name in outputs:
        layer = report.layer(name)
        given = overrides.get(name) or overrides.get("*")
        kind = given or ("detection" if name in detection else _infer(layer))
        if kind == "classification" and _classes(layer.shape) is None:
            if name not in overrides:
                kind = "other"  # "--task classification" applies to the outputs that hold class scores
            else:
                raise InputError(f"--task {name}=classification: output shape {list(layer.shape or ())} is not a "
                                 "vector of class scores")
        if kind == "detection" and name not in detection:
            if name not in overrides:
                kind = _infer(layer)
            else:
                raise InputError(f"--task {name}=detection: no detector head (scores and boxes) was found at this "
                                 "output (docs/json-report.md, meta.detection)")
        tasks.append(OutputTask(name, kind, index[name], detection.get(name)))
    return tasks


def _classes(shape: Sequence[int] | None) -> int | None:
    dims = [d for d in (shape or ()) if d != 1]
    return dims[0] if len(dims) == 1 and isinstance(dims[0], int) and dims[0] >= 2 else None


def _infer(layer: Any) -> str:
    classes = _classes(layer.shape)
    if classes is None:
        return "other"
    return "classification" if layer.op_type in _SOFTMAX or classes >= 10 or _probabilities(layer) else "other"


def _probabilities(layer: Any) -> bool:
    """The first sample's reference values are a probability vector (in [0, 1], summing to 1)."""
    m = layer.metrics
    if m is None or not m.count or m.ref_nan or m.ref_inf:
        return False
    return m.ref_min >= 0.0 and m.ref_max <= 1.0 and abs(m.ref_mean * m.count - 1.0) < 1e-3


def sample_task(plan: Any, ref: Mapping[str, np.ndarray], tgt: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One sample's task record: {output: (ref class, target class, ref margin, target margin, in top 5)}."""
    out: dict[str, Any] = {}
    for task in plan.tasks:
        if task.kind != "classification":
            continue
        r = ref.get(task.output)
        t = tgt.get(plan.targets[task.index])
        if r is None or t is None or np.asarray(r).size != np.asarray(t).size:
            continue
        p = np.asarray(r, np.float64).reshape(-1)
        q = np.asarray(t, np.float64).reshape(-1)
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            out[task.output] = None
            continue
        a, b = int(np.argmax(p)), int(np.argmax(q))
        top5 = a in np.argsort(-q, kind="stable")[:5] if q.size > 5 else None
        out[task.output] = (a, b, _margin(p, a), _margin(q, b), None if top5 is None else bool(top5))
    return out


def _margin(scores: np.ndarray, top: int) -> float:
    """Top-1 minus top-2 score of finite ``scores`` (inf for a single score)."""
    if scores.size < 2:
        return math.inf
    rest = scores.copy()
    rest[top] = -math.inf  # the others are finite: the max is theirs
    return float(scores[top] - rest.max())


@dataclass
class ClassificationStats:
    """Agreement of one classification output over the samples seen so far."""

    output: str
    samples: int = 0
    undefined: int = 0
    top1: int = 0
    top5: int = 0
    top5_counted: int = 0
    flips: list[dict[str, Any]] = field(default_factory=list)
    confusion: Counter = field(default_factory=Counter)
    labeled: int = 0
    reference_correct: int = 0
    target_correct: int = 0

    def add(self, sample: str, record: tuple | None, label: int | None) -> None:
        self.samples += 1
        if record is None:
            self.undefined += 1
            return
        a, b, ma, mb, top5 = record
        if a == b:
            self.top1 += 1
        else:
            self.flips.append({"id": sample, "reference_class": a, "target_class": b,
                               "reference_margin": ma, "target_margin": mb})
            self.confusion[(a, b)] += 1
        if top5 is not None:
            self.top5_counted += 1
            self.top5 += bool(top5)
        if label is not None:
            self.labeled += 1
            self.reference_correct += a == label
            self.target_correct += b == label

    def as_dict(self) -> dict[str, Any]:
        n = self.samples - self.undefined
        data: dict[str, Any] = {
            "kind": "classification", "samples": self.samples, "undefined": self.undefined,
            "top1_agreement": self.top1 / n if n else None, "top1_agree": self.top1,
            "top5_agreement": self.top5 / self.top5_counted if self.top5_counted else None,
            "flipped": len(self.flips), "flips": list(self.flips),
            "confusion": [{"reference_class": a, "target_class": b, "samples": c}
                          for (a, b), c in sorted(self.confusion.items(), key=lambda kv: (-kv[1], kv[0]))],
        }
        if self.labeled:
            data["accuracy"] = {"labeled": self.labeled, "reference": self.reference_correct / self.labeled,
                                "target": self.target_correct / self.labeled}
        return data


def load_labels(path: str | Path) -> dict[str, int]:
    """Labels by sample id from JSON ``{id: class}`` or text lines ``id,class`` / ``id class``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read the labels ({e.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a JSON object {{sample_id: class}}")
            return {str(k): int(v) for k, v in data.items()}
        labels = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").replace("\t", " ").split()
            if len(parts) != 2:
                raise InputError(f"{path}:{number}: expected 'sample_id,class', got {line!r}")
            labels[parts[0]] = int(parts[1])
        return labels
    except ValueError as e:
        raise InputError(f"{path}: a class must be an integer ({e})") from None


@dataclass
class DetectionStats:
    """Box agreement of one detector head (named by its scores tensor) over the samples."""

    head: str
    samples: int = 0
    undefined: int = 0
    reference_kept: int = 0
    target_kept: int = 0
    matched: int = 0
    disagreeing: list[dict[str, Any]] = field(default_factory=list)
    max_score_delta: float | None = None

    def add(self, sample: str, record: tuple | None) -> None:
        self.samples += 1
        if record is None:
            self.undefined += 1
            return
        ref, tgt, matched, delta = record
        self.reference_kept += ref
        self.target_kept += tgt
        self.matched += matched
        if ref != matched or tgt != matched:
            self.disagreeing.append({"id": sample, "reference_kept": ref, "target_kept": tgt, "matched": matched,
                                     "lost": ref - matched, "extra": tgt - matched})
        if delta is not None and (self.max_score_delta is None or delta > self.max_score_delta):
            self.max_score_delta = delta

    def as_dict(self, score_threshold: float, iou_threshold: float) -> dict[str, Any]:
        return {"kind": "detection", "head": self.head, "samples": self.samples, "undefined": self.undefined,
                "score_threshold": score_threshold, "iou_threshold": iou_threshold,
                "reference_kept": self.reference_kept, "target_kept": self.target_kept, "matched": self.matched,
                "lost": self.reference_kept - self.matched, "extra": self.target_kept - self.matched,
                "samples_agreeing": self.samples - self.undefined - len(self.disagreeing),
                "disagreeing": list(self.disagreeing), "max_score_delta": self.max_score_delta}
