"""Fold sample results, in sample order, into layer statistics, task agreement and small records."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netdiff.dataset.evaluate import Plan, SampleResult, output_cosine
from netdiff.dataset.stats import BINS, LayerStats, LayerTable, bin_upper, log_bin
from netdiff.dataset.task import ClassificationStats, DetectionStats
from netdiff.types import Finding, Report, _json_number

import numpy as np


@dataclass
class Aggregate:
    """Everything kept over the samples: per layer statistics, per output agreement, one small
    record per sample and the ``worst`` k samples: most diverged outputs, then most diverged layers,
    then lowest output cosine."""

    plan: Plan
    worst_k: int = 1
    labels: Mapping[str, int] = field(default_factory=dict)
    table: LayerTable = field(init=False)
    classification: dict[str, ClassificationStats] = field(default_factory=dict)
    detection: dict[str, DetectionStats] = field(default_factory=dict)
    records: list[tuple] = field(default_factory=list)
    output_hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    errors: int = 0
    _worst: list[tuple] = field(default_factory=list)
    _layers: list[LayerStats] | None = None

    def __post_init__(self) -> None:
        self.table = LayerTable(len(self.plan.names))
        self.classification = {t.output: ClassificationStats(t.output) for t in self.plan.tasks
                               if t.kind == "classification"}
        self.detection = {h.scores: DetectionStats(h.scores) for h in self.plan.heads}

    def add(self, result: SampleResult) -> None:
        """Count one sample (call in sample order)."""
        self.add_many([result])

    def add_many(self, results: list[SampleResult]) -> None:
        """Count samples (in sample order): the layer statistics of the block at once in numpy."""
        plan = self.plan
        n = len(plan.names)
        good = [r for r in results if r.error is None]
        self.errors += len(results) - len(good)
        if good:
            cosine = np.array([r.cosine for r in good], np.float64).reshape(len(good), n)
            rel = np.array([r.rel_l2 for r in good], np.float64).reshape(len(good), n)
            self.table.add_block([r.id for r in good], cosine, rel, [r.status for r in good],
                                 [r.first_divergence for r in good])
            self._layers = None
        outputs = plan.outputs
        for result in results:
            first = result.first_divergence
            ok = result.error is None
            out_cos = output_cosine(plan, result.cosine) if ok else math.nan
            self.output_hist[log_bin(1.0 - out_cos if not math.isnan(out_cos) else math.nan)] += 1
            if ok:
                for name, stats in self.classification.items():
                    stats.add(result.id, result.task.get(name), self.labels.get(result.id))
                for name, stats in self.detection.items():
                    stats.add(result.id, result.boxes.get(name))
            status = result.status
            diverged = status.count("diverged")
            self.records.append((result.id, plan.names[first] if first is not None else None, out_cos,
                                 tuple(result.cosine[outputs].tolist()), tuple(result.rel_l2[outputs].tolist()),
                                 result.task, result.boxes, result.error))
            out_diverged = sum(status[i] == "diverged" for i in outputs)
            key = (out_diverged, diverged, -_low(out_cos), -result.index)  # larger is worse
            if len(self._worst) < self.worst_k:
                heapq.heappush(self._worst, (key, result.index, result.id))
            elif key > self._worst[0][0]:
                heapq.heapreplace(self._worst, (key, result.index, result.id))

    @property
    def layers(self) -> list[LayerStats]:
        """Per planned layer, its statistics over the samples counted so far."""
        if self._layers is None:
            self._layers = [self.table.layer(i) for i in range(self.table.n)]
        return self._layers

    def worst(self) -> list[tuple[int, str]]:
        """(index, id) of the worst samples, worst first."""
        return [(i, s) for _, i, s in sorted(self._worst, reverse=True)]

    def shared_first_divergence(self, minimum: float = 0.1) -> tuple[str, int, str] | None:
        """(layer, samples, worst of them) of the first divergence most samples share, when at least
        two samples and a fraction ``minimum`` of them share it."""
        best = max(range(len(self.layers)), key=lambda i: (self.layers[i].first_divergence, -i), default=None)
        if best is None:
            return None
        stats = self.layers[best]
        if stats.first_divergence < max(2, math.ceil(minimum * len(self.records))):
            return None
        return self.plan.names[best], stats.first_divergence, stats.first_divergence_worst[1]

    def record_dicts(self) -> list[dict[str, Any]]:
        """``report.meta["samples"]``: one small record per sample, in sample order."""
        names = [self.plan.names[i] for i in self.plan.outputs]
        out = []
        for sid, first, out_cos, cos, rel, task, boxes, error in self.records:
            record: dict[str, Any] = {"id": sid, "first_divergence": first, "output_cosine": _json_number(out_cos),
                                      "outputs": {n: {"cosine": _json_number(c), "rel_l2": _json_number(r)}
                                                  for n, c, r in zip(names, cos, rel)}}
            classes = {k: {"reference": v[0], "target": v[1], "reference_margin": v[2], "target_margin": v[3]}
                       for k, v in (task or {}).items() if v is not None}
            if classes:
                record["classes"] = classes
            found = {k: {"reference_kept": v[0], "target_kept": v[1], "matched": v[2], "lost": v[0] - v[2],
                         "extra": v[1] - v[2]} for k, v in (boxes or {}).items() if v is not None}
            if found:
                record["boxes"] = found
            if error:
                record["error"] = error
            out.append(record)
        return out

    def outputs(self) -> dict[str, Any]:
        """Per graph output: its task and agreement."""
        data: dict[str, Any] = {}
        for task in self.plan.tasks:
            stats = self.layers[task.index].as_dict()
            entry = {"kind": task.kind, "mean_cosine": stats["mean_cosine"], "p5_cosine": stats["p5_cosine"],
                     "worst_cosine": stats["worst_cosine"], "worst_sample": stats["worst_sample"],
                     "mean_rel_l2": stats["mean_rel_l2"], "p95_rel_l2": stats["p95_rel_l2"],
                     "diverged": stats["diverged"]}
            if task.output in self.classification:
                entry.update(self.classification[task.output].as_dict())
            if task.kind == "detection" and task.scores in self.detection:
                entry["head"] = task.scores
            data[task.output] = entry
        return data

    def heads(self) -> dict[str, Any]:
        """Per detector head (by its scores tensor): boxes kept / matched / lost / extra over the samples."""
        from netdiff.detection import DEFAULT_IOU_THRESHOLD

        return {name: s.as_dict(self.plan.score_threshold, DEFAULT_IOU_THRESHOLD) for name, s in self.detection.items()}

    def histogram(self) -> dict[str, Any]:
        """Samples per bin of ``1 - output cosine`` (log bins, upper edges; the last counts NaN)."""
        used = np.nonzero(self.output_hist)[0]
        return {"upper_edges": [_json_number(bin_upper(int(i))) for i in used],
                "samples": [int(self.output_hist[i]) for i in used]}


def apply(report: Report, aggregate: Aggregate, details: list[dict[str, Any]],
          shared: dict[str, Any] | None, extra_findings: list[Finding]) -> Report:
    """Turn the worst sample's full report into the dataset report (docs/json-report.md)."""
    from netdiff.diagnosis.samples import dataset_dependent_finding

    plan = aggregate.plan
    stats = {name: s for name, s in zip(plan.names, aggregate.layers)}
    for layer in report.layers:
        if layer.name in stats:
            layer.extra["samples"] = stats[layer.name].as_dict()
    worst_id = details[0]["id"] if details else None
    report.meta["samples"] = aggregate.record_dicts()
    report.meta["worst_sample"] = worst_id
    firsts = sorted(((s.first_divergence, i) for i, s in enumerate(aggregate.layers) if s.first_divergence),
                    key=lambda x: (-x[0], x[1]))
    report.meta["dataset"] = {
        "samples": len(aggregate.records),
        "diverged_samples": sum(1 for r in aggregate.records if r[1] is not None),
        "errors": aggregate.errors,
        "worst_sample": worst_id,
        "first_divergences": [{"layer": plan.names[i], "samples": n} for n, i in firsts[:20]],
        "outputs": aggregate.outputs(),
        "detection": aggregate.heads(),
        "output_cosine_histogram": aggregate.histogram(),
        "worst": details,
        "shared_first_divergence": shared,
        "metrics": "cosine and rel_l2 per sample in float64; p5/p95 from a log histogram (40 bins per decade)",
    }
    report.inputs = {**report.inputs, "samples": f"{len(aggregate.records)} (report shows {worst_id})"}
    known = {(f.kind, f.layer) for f in report.findings}
    report.findings = [*report.findings, *[f for f in extra_findings if (f.kind, f.layer) not in known]]
    finding = dataset_dependent_finding(report)
    if finding is not None:  # the headline of a multi-sample comparison: listed first
        report.findings = [finding, *report.findings]
    return report


def _low(value: float) -> float:
    return -math.inf if math.isnan(value) else value
