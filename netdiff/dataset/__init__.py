"""Dataset-scale comparison: many samples, streamed, on all the cores (or a Dask cluster).

The first sample is compared in full (alignment, fused-activation realignment, layout
transforms); that fixes the :class:`~netdiff.dataset.evaluate.Plan` every other sample measures
in a worker: both models run once, cosine and rel_l2 of every pair, the first divergence, the
task record (class flips). Results are folded in sample order into per-layer statistics whose
size does not grow with the samples (:mod:`netdiff.dataset.stats`). Afterwards the worst
``diagnose_worst`` samples, and the sample that stands for a first divergence many samples share,
get the full single-sample pipeline (findings, isolated re-runs); the report is the worst
sample's report with the dataset statistics added (docs/json-report.md, "Dataset").
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from netdiff.dataset.aggregate import Aggregate, apply
from netdiff.dataset.engines import ENGINES, default_jobs, run_samples
from netdiff.dataset.evaluate import BLOCK, Job, ModelSource, converted_sources, plan_from_report
from netdiff.dataset.task import infer_tasks, load_labels, parse_task_args
from netdiff.errors import InputError
from netdiff.progress import NullProgress, Progress
from netdiff.types import Finding, Report

__all__ = ["ENGINES", "compare_dataset", "default_jobs", "load_labels", "parse_task_args", "run_dataset"]


def compare_dataset(reference: Any, target: Any, samples: Any, *, reference_format: str | None = None,
                    target_format: str | None = None, reference_options: Mapping[str, Any] | None = None,
                    target_options: Mapping[str, Any] | None = None, preprocess: Any = None,
                    jobs: int | None = None, engine: str = "local", address: str | None = None,
                    diagnose_worst: int = 1, labels: Mapping[str, int] | str | Path | None = None,
                    tasks: Mapping[str, str] | None = None, progress: Progress | None = None,
                    **options: Any) -> Report:
    """Compare ``target`` with ``reference`` on every sample and aggregate.

    Args:
        reference: Reference model (path or :class:`netdiff.runners.Model`).
        target: Target model, or a directory of per-sample dumps ``<sample_id>/``.
        samples: A samples directory or list (see :func:`netdiff.multisample.load_samples`).
        reference_format, target_format, reference_options, target_options: As in
            :func:`netdiff.compare`.
        preprocess: :class:`netdiff.calibration.Preprocess` for image samples.
        jobs: Worker processes (default: the machine's cores, started once the first block shows the
            samples left would take over a few seconds here); results do not depend on it.
        engine: "local" or "dask" (with ``address``, the scheduler).
        diagnose_worst: Samples diagnosed in full (findings, isolated re-runs), worst first.
        labels: {sample id: class} or a labels file: accuracy of both sides.
        tasks: {output or "*": "classification" | "other"} overriding the inferred task.
        progress: Receives progress (one unit per sample).
        **options: Passed to :func:`netdiff.compare` for the fully compared samples
            (thresholds, mapping, isolated, diagnose, seed).

    Raises:
        InputError: The reference is not a model, or the target is a single dump.
    """
    from netdiff.multisample import load_samples, per_sample_dir, sample_feeds
    from netdiff.pipeline import compare, open_source
    from netdiff.runners import Model

    items = load_samples(samples)
    ref_model = open_source(reference, reference_format, reference_options)
    if not isinstance(ref_model, Model):
        raise InputError("several samples need a reference model to run (the reference is a dump)")
    dumps = per_sample_dir(target, items)
    tgt_model = None
    if dumps is None:
        tgt_model = open_source(target, target_format, target_options)
        if not isinstance(tgt_model, Model):
            raise InputError(f"{target}: a single target dump holds one sample; for several samples give a target "
                             f"model or a directory with one dump per sample id ({', '.join(s.id for s in items[:3])}, ...)")
    specs = ref_model.input_specs()

    def full(sample: Any) -> Report:
        feeds = sample_feeds(sample, specs, preprocess)
        if tgt_model is not None:
            return compare(ref_model, tgt_model, feeds, **options)
        return compare(ref_model, dumps / sample.id, feeds, target_format=target_format,
                       target_options=target_options, **options)

    def job(plan: Any) -> Job:
        if tgt_model is not None:
            sources = converted_sources(ref_model, tgt_model, sample_feeds(items[0], specs, preprocess),
                                        plan.targets)
            return Job(ModelSource.of(ref_model), "model", plan, target=ModelSource.of(tgt_model),
                       preprocess=preprocess, sources=sources)
        return Job(ModelSource.of(ref_model), "dumps", plan, dumps=str(dumps), dump_format=target_format,
                   dump_options=dict(target_options or {}), preprocess=preprocess)

    return _evaluate(items, full, job, score_threshold=options.get("score_threshold", 0.5), jobs=jobs,
                     engine=engine, address=address, diagnose_worst=diagnose_worst, labels=labels, tasks=tasks,
                     progress=progress)


def run_dataset(model: Any, kind: str, samples: Any, *, calibration: Any = None, preprocess: Any = None,
                calibration_limit: int | None = None, options: Mapping[str, Any] | None = None,
                model_options: Mapping[str, Any] | None = None, thresholds: Any = None, mapping: Any = None,
                isolated: bool = True, diagnose: bool = True, seed: int = 0, jobs: int | None = None,
                engine: str = "local", address: str | None = None, diagnose_worst: int = 1,
                labels: Mapping[str, int] | str | Path | None = None, tasks: Mapping[str, str] | None = None,
                progress: Progress | None = None) -> Report:
    """Simulate ``kind`` for ``model`` once (calibrated on ``calibration``, not on the samples) and
    compare it with the float model on every sample, as :func:`compare_dataset`.

    Raises:
        InputError: No calibration source (the evaluation samples are not used to calibrate).
    """
    from netdiff.multisample import load_samples, sample_feeds
    from netdiff.simulators.run import compare_simulation, prepare_simulation

    from netdiff.simulators import get_simulator

    if calibration is None and get_simulator(kind).needs_calibration:
        raise InputError(f"netdiff run --target {kind} with a samples directory needs --calib: the target is "
                         "calibrated once, on calibration samples kept apart from the evaluation samples")
    if isinstance(calibration, (str, Path)) and isinstance(samples, (str, Path)) \
            and Path(calibration).resolve() == Path(samples).resolve():
        raise InputError(f"{samples}: the calibration samples (--calib) are the evaluation samples (--input); "
                         "calibrate on other samples, or the comparison cannot show calibration faults")
    items = load_samples(samples)
    sim = prepare_simulation(model, kind, calibration=calibration, preprocess=preprocess,
                             calibration_limit=calibration_limit, options=options, model_options=model_options)
    specs = sim.model.input_specs()

    def full(sample: Any) -> Report:
        return compare_simulation(sim, sample_feeds(sample, specs, preprocess), thresholds=thresholds,
                                  mapping=mapping, isolated=isolated, diagnose=diagnose, seed=seed)

    def job(plan: Any) -> Job:
        prepared = sim.prepared
        return Job(ModelSource.of(sim.model), "simulated", plan, prepared=pickle.dumps(prepared, protocol=4),
                   preprocess=preprocess)

    return _evaluate(items, full, job, score_threshold=0.5, jobs=jobs, engine=engine, address=address,
                     diagnose_worst=diagnose_worst, labels=labels, tasks=tasks, progress=progress)


def _evaluate(items: Sequence[Any], full: Callable[[Any], Report], make_job: Callable[[Any], Job], *,
              score_threshold: float, jobs: int | None, engine: str, address: str | None, diagnose_worst: int,
              labels: Mapping[str, int] | str | Path | None, tasks: Mapping[str, str] | None,
              progress: Progress | None) -> Report:
    progress = progress or NullProgress()
    if diagnose_worst < 1:
        raise InputError("--diagnose-worst must be at least 1")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    first = full(items[0])
    plan = plan_from_report(first, [], score_threshold)
    plan.tasks = infer_tasks(first, plan.names, tasks, plan.heads)
    aggregate = Aggregate(plan, worst_k=min(diagnose_worst, len(items)), labels=dict(labels or {}))
    job = make_job(plan)
    progress.start(f"comparing {len(items)} samples", len(items))
    try:
        pending: list[Any] = []
        for result in run_samples(job, items, jobs=jobs or default_jobs(), engine=engine, address=address,
                                      adaptive=jobs is None):
            pending.append(result)
            if len(pending) >= BLOCK:  # folded a block at a time (bounded)
                aggregate.add_many(pending)
                pending.clear()
            progress.advance()
        aggregate.add_many(pending)
    finally:
        progress.stop()
    reports: dict[int, Report] = {0: first}

    def report_of(index: int) -> Report:
        if index not in reports:
            reports[index] = full(items[index])
        return reports[index]

    worst = aggregate.worst()
    details = [_detail(items[i].id, report_of(i)) for i, _ in worst]
    shared, extra = _shared(aggregate, items, report_of, worst)
    base = report_of(worst[0][0])
    return apply(base, aggregate, details, shared, extra)


def _detail(sample_id: str, report: Report) -> dict[str, Any]:
    outputs = [report.layer(n) for n in report.meta.get("graph_outputs", []) if _has(report, n)]
    return {"id": sample_id, "first_divergence": report.first_divergence, "origins": list(report.origins),
            "diverged_layers": sum(x.status == "diverged" for x in report.layers),
            "outputs": {x.name: x.metrics.as_dict()["cosine"] for x in outputs if x.metrics is not None},
            "findings": [f.to_dict() for f in report.findings]}


def _has(report: Report, name: str) -> bool:
    try:
        report.layer(name)
    except KeyError:
        return False
    return True


def _shared(aggregate: Aggregate, items: Sequence[Any], report_of: Callable[[int], Report],
            worst: list[tuple[int, str]]) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The first divergence many samples share, diagnosed on its worst sample."""
    found = aggregate.shared_first_divergence()
    if found is None:
        return None, []
    layer, count, sample_id = found
    index = next(i for i, s in enumerate(items) if s.id == sample_id)
    report = report_of(index)
    findings = [f for f in report.findings if f.layer == layer or f.layer is None]
    shared = {"layer": layer, "samples": count, "sample": sample_id,
              "findings": [f.to_dict() for f in findings]}
    if index == worst[0][0]:
        return shared, []
    extra = [Finding(f.kind, f.layer, f.severity, f"{f.message} (sample {sample_id}, one of the {count} samples "
                                                  f"that first diverge at this layer)",
                     {**dict(f.evidence), "sample": sample_id}, f.suggestion) for f in findings]
    return shared, extra
