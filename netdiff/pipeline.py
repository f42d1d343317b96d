"""The comparison pipeline: open both sides, align, measure, judge, diagnose, report."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.align import Alignment, align_dumps, load_mapping
from netdiff._input_files import check_file_or_directory
from netdiff.errors import DumpFormatError, NetdiffError
from netdiff.inputs import InputsLike, resolve_feeds
from netdiff.detail import layer_detail
from netdiff.metrics import compute_metrics
from netdiff.progress import NullProgress, Progress
from netdiff.readers import read_dump
from netdiff.runners import Model, find_runner, load_model, runner_names
from netdiff.types import Dump, LayerResult, Match, Precision, Report, Tensor, Thresholds, Transform
from netdiff.verdict import apply_expected_noise, find_origins, status_of

log = logging.getLogger(__name__)


@dataclass
class Side:
    """One side of a comparison once opened: its dump, and the model when it was run."""

    dump: Dump
    description: dict[str, Any]
    model: Model | None = None
    feeds: dict[str, np.ndarray] = field(default_factory=dict)


def open_source(source: Any, format: str | None = None, options: Mapping[str, Any] | None = None
                ) -> Model | Dump:
    """Return a :class:`Model` for a model file or a :class:`Dump` for anything else."""
    if isinstance(source, (Dump, Model)):
        return source
    path = Path(source)
    check_file_or_directory(path, "input", DumpFormatError)
    options = dict(options or {})
    if format in runner_names() or (format is None and find_runner(path) is not None):
        return load_model(path, format=format, **options)
    return read_dump(path, format=format, **options)


def run_model(model: Model, inputs: InputsLike, seed: int = 0, progress: Progress | None = None
              ) -> Side:
    """Run ``model`` on ``inputs`` and capture every tensor."""
    feeds, described = resolve_feeds(model.input_specs(), inputs, seed=seed)
    progress = progress or NullProgress()
    progress.start(f"running {model.path.name}", 1)
    try:
        dump = model.run(feeds)
    finally:
        progress.stop()
    description = {**model.describe(), "tensors": len(dump), "inputs": described}
    return Side(dump, description, model, feeds)


def compare(reference: Any, target: Any, inputs: InputsLike = None, *,
            reference_format: str | None = None, target_format: str | None = None,
            reference_options: Mapping[str, Any] | None = None, target_options: Mapping[str, Any] | None = None,
            mapping: Mapping[str, str] | str | Path | None = None, thresholds: Thresholds | None = None,
            seed: int = 0, diagnose: bool = True, isolated: str = "origins", workers: int = 2,
            precision: Precision | str | None = None, progress: Progress | None = None,
            score_threshold: float = 0.5, naming: str | None = None) -> Report:
    """Compare every tensor of ``target`` with ``reference``.

    Args:
        reference: Model path (.onnx, .prototxt), dump path, :class:`Dump` or :class:`Model`.
        target: As ``reference``; a second model is run on the same inputs.
        inputs: Inputs for model sides (see :func:`netdiff.inputs.resolve_feeds`).
        reference_format: Force a reader or runner key for the reference.
        target_format: Force a reader or runner key for the target.
        reference_options: Reader/runner options for the reference (e.g. ``weights``).
        target_options: Reader/runner options for the target (e.g. ``fusion_map``).
        mapping: ``{target_name: reference_name}`` pairs or a JSON file of them.
        thresholds: Divergence thresholds (default cosine < 0.99 or rel_l2 > 0.05).
        seed: Seed of the random input used when ``inputs`` is None.
        diagnose: Run the diagnosis rules.
        isolated: Isolated-error re-runs: "origins", "all" or "none".
        workers: Threads measuring tensors in parallel.
        precision: The target's precision ("int8", "fp16", "nnie8", ... or a :class:`Precision`);
            by default learnt from a quantized or fp16 target model, else unknown. When known, layers
            within its expected noise are ``noisy``, not diverged (:mod:`netdiff.noise`).
        progress: Receives progress (silent by default).
        score_threshold: Detector heads keep boxes scoring at least this (netdiff.detection).
        naming: How the target names a Caffe net's tensors: "blob" or "layer"; None detects it
            (netdiff.naming; it only matters for in-place layers).

    Returns:
        The :class:`Report`.
    """
    thresholds = thresholds or Thresholds()
    progress = progress or NullProgress()
    if naming is not None and naming not in ("blob", "layer"):
        from netdiff.errors import InputError

        raise InputError(f"naming must be blob or layer, not {naming!r}")
    if isinstance(mapping, (str, Path)):  # read (and checked) before any model runs
        mapping = load_mapping(mapping)
    ref_source = open_source(reference, reference_format, reference_options)
    tgt_source = open_source(target, target_format, target_options)
    ref_side = _open_side(ref_source, inputs, seed, progress, None)
    tgt_side = _open_side(tgt_source, inputs, seed, progress, ref_side.feeds)
    if not mapping:
        adapt_converted(ref_side, tgt_side)
    for name, side in (("reference", ref_side), ("target", tgt_side)):
        log.info("%s %s [%s]: %d tensors", name, side.dump.source, side.dump.format, len(side.dump))
    from netdiff.naming import resolve_naming

    names = resolve_naming(ref_side.dump, tgt_side.dump, naming)
    alignment = align_dumps(ref_side.dump, tgt_side.dump, mapping, naming=names.tensor_names)
    log.info("aligned %d tensor pairs (%d target-only)", len(alignment.pairs), len(alignment.target_only))
    layers = measure_all(ref_side.dump, tgt_side.dump, alignment, thresholds, workers, progress)
    report = Report(reference=ref_side.description, target=tgt_side.description, thresholds=thresholds,
                    layers=layers, inputs=ref_side.description.get("inputs") or tgt_side.description.get("inputs") or {})
    if names.tensor_names is not None:
        report.meta["naming"] = names.as_dict()
    finish_report(report, ref_side, tgt_side, alignment, diagnose=diagnose, isolated=isolated,
                  precision=precision, score_threshold=score_threshold)
    return report


def adapt_converted(ref_side: Side, tgt_side: Side) -> None:
    """A target ONNX model written by a converter (QDQ, QOperator, fp16, optimized): its dump in the
    reference's terms (:func:`netdiff.converted.adapt_target`)."""
    ref_model, tgt_model = ref_side.model, tgt_side.model
    if getattr(ref_model, "name", None) != "onnx":
        return  # an ONNX reference run by onnxruntime (a Caffe translation keeps its own names)
    from netdiff.converted import adapt_target, skeleton_model

    recorded = tgt_model is None and "graph" in tgt_side.dump.meta  # a netdiff dump of a converted model
    if getattr(tgt_model, "name", None) != "onnx" and not recorded:
        return
    what = "dump of a converted model" if recorded else f"target model {tgt_model.path.name}"
    try:
        graph = skeleton_model(tgt_side.dump.meta["graph"]) if recorded else tgt_model.onnx_model()
        tgt_side.dump = adapt_target(ref_model.onnx_model(), graph, ref_side.dump, tgt_side.dump)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:  # a graph shape the adapter does not know
        log.warning("%s compared by name only: its graph could not be mapped (%s: %s)",
                    what, type(e).__name__, str(e)[:200])
        tgt_side.dump.meta["adaptation_error"] = f"{type(e).__name__}: {str(e)[:200]}"


def target_precision(precision: Precision | str | None, ref_side: Side, tgt_side: Side) -> Precision | None:
    """The precision to judge the target by: the one given, else what a target model holds."""
    if isinstance(precision, Precision):
        return precision
    if isinstance(precision, str):
        from netdiff.noise import precision_hint

        return precision_hint(precision)
    if tgt_side.model is not None and hasattr(tgt_side.model, "onnx_model"):
        from netdiff.converted import model_precision

        reference = ref_side.model.onnx_model() if ref_side.model is not None and hasattr(ref_side.model, "onnx_model") else None
        return model_precision(tgt_side.model.onnx_model(), reference)
    if tgt_side.model is None and "graph" in tgt_side.dump.meta and "adaptation_error" not in tgt_side.dump.meta:
        from netdiff.converted import model_precision, skeleton_model

        reference = ref_side.model.onnx_model() if ref_side.model is not None and hasattr(ref_side.model, "onnx_model") else None
        try:
            return model_precision(skeleton_model(tgt_side.dump.meta["graph"]), reference)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
    return None


def finish_report(report: Report, ref_side: Side, tgt_side: Side, alignment: Alignment, *,
                  diagnose: bool = True, isolated: str = "origins",
                  precision: Precision | str | None = None, score_threshold: float = 0.5) -> Report:
    """Fill origins, first divergence, meta, detections, isolated metrics and (optionally) findings of a
    measured report.

    With ``diagnose``, target tensors holding a fused activation are re-aligned first, so the
    origins and first divergence are computed on the corrected pairs. With a known ``precision``
    (see :func:`target_precision`), each layer gets its expected noise and is re-judged
    ok / noisy / diverged before the origins are found.
    """
    model = ref_side.model.onnx_model() if ref_side.model is not None else None
    known = target_precision(precision, ref_side, tgt_side)
    if known is not None:  # expected noise first: the fused-activation check accepts a pair within it
        from netdiff.noise import assign_expected_noise

        assign_expected_noise(report.layers, ref_side.dump, known, model)
    if diagnose:
        from netdiff.diagnosis.fused import realign_fused_activations

        realign_fused_activations(report.layers, ref_side.dump, tgt_side.dump, report.thresholds)
    from netdiff.detection import compare_detections

    compare_detections(report, ref_side.dump, tgt_side.dump, score_threshold=score_threshold)
    if known is not None:
        from netdiff.noise import noise_summary

        apply_expected_noise(report.layers, report.thresholds)
        report.meta["precision"] = {**known.describe(), **noise_summary(report.layers)}
    report.origins = find_origins(report.layers)
    report.first_divergence = report.origins[0] if report.origins else None
    report.meta.setdefault("target_only", alignment.target_only)
    report.meta.setdefault("aligned", len(alignment.pairs))
    report.meta.setdefault("graph_outputs", list(ref_side.dump.graph_outputs))
    if isinstance(ref_side.dump.meta.get("input_resized"), str):
        report.meta.setdefault("reference.input_resized", ref_side.dump.meta["input_resized"])
    for key, value in tgt_side.dump.meta.items():
        if key not in ("blobs",) and isinstance(value, (str, int, float, bool)):
            report.meta.setdefault(f"target.{key}", value)
    if isolated != "none" and model is not None:
        from netdiff.isolated import compute_isolated

        compute_isolated(model, report.layers, ref_side.dump, tgt_side.dump, isolated, report.origins)
    if diagnose:
        from netdiff.diagnosis import Context, diagnose as run_rules

        context = Context(report, ref_side.dump, tgt_side.dump, alignment, model=model,
                          target_format=tgt_side.dump.format, options={"isolated": isolated, "precision": known})
        report.findings = run_rules(context)
    return report


def _open_side(source: Model | Dump, inputs: InputsLike, seed: int, progress: Progress,
               reference_feeds: dict[str, np.ndarray] | None) -> Side:
    if isinstance(source, Dump):
        description = {"path": source.source, "format": source.format, "kind": "dump", "tensors": len(source)}
        return Side(source, description)
    if reference_feeds and inputs is None:
        inputs = _feeds_for(source, reference_feeds)
    return run_model(source, inputs, seed, progress)


def _feeds_for(model: Model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's feeds, cast to a second model's input dtypes (e.g. an fp16 export)."""
    specs = {s.name: s for s in model.input_specs()}
    if set(specs) != set(feeds):
        raise NetdiffError(f"the target model's inputs ({', '.join(specs)}) differ from the reference's "
                           f"({', '.join(feeds)}); pass --input NAME=FILE for the target's names")
    return {n: feeds[n].astype(specs[n].dtype) for n in specs}


def measure_all(reference: Dump, target: Dump, alignment: Alignment, thresholds: Thresholds,
                workers: int = 2, progress: Progress | None = None) -> list[LayerResult]:
    """Measure every aligned pair (in parallel threads) and build the layer results in order."""
    progress = progress or NullProgress()
    pairs = alignment.pairs
    progress.start("comparing", len(pairs))
    results: dict[str, LayerResult] = {}

    def task(match: Match) -> LayerResult:
        try:
            return measure_pair(reference[match.reference], target[match.target], match, thresholds)
        finally:
            progress.advance()

    try:
        if workers > 1 and len(pairs) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(task, pairs):
                    results[result.name] = result
        else:
            for match in pairs:
                result = task(match)
                results[result.name] = result
    finally:
        progress.stop()
    layers = []
    for i, match in enumerate(alignment.matches):
        if match.reference is not None and match.reference in results:
            layers.append(results[match.reference])
        elif match.reference is not None:
            layers.append(_unpaired_reference(reference[match.reference], match, alignment, i))
        else:
            layers.append(_unpaired_target(target[match.target], match))
    return layers


def measure_pair(ref: Tensor, tgt: Tensor, match: Match, thresholds: Thresholds, detail: bool = True) -> LayerResult:
    """Compare one aligned pair; a bad tensor gives status ``error``, never an exception.

    With ``detail``, downsampled histograms and channel data are kept for rich reports (and an
    error heatmap for layers that are not ok).
    """
    layer = LayerResult(name=ref.name, target_name=tgt.name, op_type=ref.op_type, order=ref.order,
                        status="error", match=match, shape=ref.shape, target_shape=tgt.shape, inputs=ref.inputs,
                        extra={"node": str(ref.meta["node"])} if ref.meta and ref.meta.get("node") else {})
    if ref.error or tgt.error:
        layer.reason = ref.error or tgt.error or ""
        return layer
    if match.transform is None:
        layer.status = "shape_mismatch"
        layer.reason = match.reason
        return layer
    try:
        r = ref.load()
        t = tgt.load()
        if tuple(r.shape) != tuple(ref.shape) or tuple(t.shape) != tuple(tgt.shape):
            raise NetdiffError(f"data shape {list(t.shape)} differs from the declared {list(tgt.shape)}")
        transform = _choose_transform(r, t, match)
        if transform is not match.transform:
            layer.match = Match(match.reference, match.target, match.method, transform,
                                reason=f"{match.reason}; {transform.description} fits best (cosine)")
        aligned = transform.apply(t, tuple(r.shape))
        layer.metrics = compute_metrics(r, aligned)
        status = status_of(thresholds, layer.metrics)
        if detail:
            layer.extra["detail"] = layer_detail(r, aligned, heatmap=status != "ok")
    except (NetdiffError, ValueError, OSError) as e:
        layer.reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return layer
    layer.status = status
    if layer.status == "diverged" and math.isnan(layer.metrics.cosine):
        layer.reason = "; ".join(layer.metrics.notes)
    return layer


def _choose_transform(r: np.ndarray, t: np.ndarray, match: Match) -> Transform:
    if not match.alternatives:
        return match.transform
    candidates = (match.transform, *match.alternatives)
    return max(candidates, key=lambda tr: _quick_cosine(r, tr.apply(t, tuple(r.shape))))


def _quick_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cosine = compute_metrics(a, b).cosine
    return -2.0 if math.isnan(cosine) else cosine


def _unpaired_reference(ref: Tensor, match: Match, alignment: Alignment, index: int) -> LayerResult:
    status = "not_observable" if ref.name in alignment.not_observable else "missing_in_target"
    return LayerResult(name=ref.name, target_name=None, op_type=ref.op_type, order=ref.order,
                       status=status, match=match, shape=ref.shape, reason=match.reason, inputs=ref.inputs,
                       extra={"node": str(ref.meta["node"])} if ref.meta and ref.meta.get("node") else {})


def _unpaired_target(tgt: Tensor, match: Match) -> LayerResult:
    return LayerResult(name=tgt.name, target_name=tgt.name, op_type=tgt.op_type, order=None,
                       status="missing_in_reference", match=match, target_shape=tgt.shape, reason=match.reason)
