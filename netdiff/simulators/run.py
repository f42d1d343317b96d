"""Simulate a target from a float model and compare it layer by layer (``netdiff run``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.calibration import Preprocess, load_calibration
from netdiff.inputs import InputsLike
from netdiff.progress import NullProgress, Progress
from netdiff.types import Dump, Match, Precision, Report, Thresholds

log = logging.getLogger(__name__)


@dataclass
class Simulation:
    """A simulated target and what it was made from.

    Attributes:
        kind: Simulator key.
        model: The float :class:`~netdiff.runners.base.Model`.
        feeds: Inputs used.
        reference: The float model's dump on ``feeds``.
        target: The simulated dump (float model names via ``origin_names``).
        prepared: The reusable simulated model, when the simulator offers one (fp16, int8).
        calibration: Number of calibration samples, and where they came from.
    """

    kind: str
    model: Any
    feeds: dict[str, np.ndarray]
    reference: Dump
    target: Dump
    prepared: Any = None
    calibration: dict[str, Any] = field(default_factory=dict)


def calibration_samples(model: Any, calibration: str | Path | Sequence[Mapping[str, np.ndarray]] | None,
                        feeds: Mapping[str, np.ndarray], preprocess: Preprocess | None = None,
                        limit: int | None = None) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Calibration samples from a path or a list; the inputs themselves when None."""
    if calibration is None:
        return [dict(feeds)], {"samples": 1, "source": "the --input itself (pass --calib for real calibration)"}
    if isinstance(calibration, (str, Path)):
        samples = load_calibration(calibration, model.input_specs(), preprocess, limit)
        return samples, {"samples": len(samples), "source": str(calibration)}
    samples = [dict(s) for s in calibration][:limit] if limit else [dict(s) for s in calibration]
    return samples, {"samples": len(samples), "source": "in-memory"}


def simulate(model: Any, kind: str, inputs: InputsLike = None, *,
             calibration: str | Path | Sequence[Mapping[str, np.ndarray]] | None = None,
             preprocess: Preprocess | None = None, calibration_limit: int | None = None,
             options: Mapping[str, Any] | None = None, model_options: Mapping[str, Any] | None = None,
             seed: int = 0, progress: Progress | None = None) -> Simulation:
    """Run the float model and the simulated ``kind`` target on the same inputs.

    Args:
        model: Float model path (.onnx, Caffe .prototxt) or :class:`Model`.
        kind: Simulator key ("fp16", "int8", "nnie8", ...).
        inputs: Inputs (see :func:`netdiff.inputs.resolve_feeds`).
        calibration: Directory/file of calibration samples, or a list of feed dicts.
        preprocess: How calibration images become inputs.
        calibration_limit: Use at most this many calibration samples.
        options: Simulator options (see each simulator's ``options``).
        model_options: Runner options for the float model (e.g. Caffe ``weights``).
        seed: Seed of the random input when ``inputs`` is None.
        progress: Receives progress.
    """
    from netdiff.pipeline import open_source, run_model
    from netdiff.runners.base import Model
    from netdiff.simulators import get_simulator

    simulator = get_simulator(kind)
    source = open_source(model, None, model_options)
    if not isinstance(source, Model):
        from netdiff.errors import ModelError

        raise ModelError(f"{model}: simulation needs a model file (.onnx, .prototxt), not a dump")
    progress = progress or NullProgress()
    side = run_model(source, inputs, seed, progress)
    samples, calib_info = calibration_samples(source, calibration, side.feeds, preprocess, calibration_limit)
    onnx_model = source.onnx_model()
    progress.start(f"simulating {kind}", 1)
    try:
        prepare = getattr(simulator, "prepare", None)
        if prepare is not None:
            prepared = prepare(onnx_model, samples, **dict(options or {}))
            target = prepared.dump(side.feeds, side.dump)
        else:
            prepared = None
            target = simulator.simulate(onnx_model, side.feeds, samples, **dict(options or {}))
    finally:
        progress.stop()
    target.meta.setdefault("calibration_samples", calib_info["samples"])
    # tensors of the executed graph that the reference does not report (helper nodes of a Caffe
    # translation) are listed as target-only, not as missing in the reference
    internal = [t.name for t in target
                if t.name not in side.dump and not t.origin_names and t.name not in target.target_only]
    target.target_only.extend(internal)
    return Simulation(kind, source, side.feeds, side.dump, target, prepared, calib_info)


def run_simulated(model: Any, kind: str, inputs: InputsLike = None, *,
                  calibration: str | Path | Sequence[Mapping[str, np.ndarray]] | None = None,
                  preprocess: Preprocess | None = None, calibration_limit: int | None = None,
                  options: Mapping[str, Any] | None = None, thresholds: Thresholds | None = None,
                  mapping: Mapping[str, str] | str | Path | None = None, isolated: bool = True,
                  diagnose: bool = True, model_options: Mapping[str, Any] | None = None, seed: int = 0,
                  progress: Progress | None = None) -> Report:
    """Simulate ``kind`` and compare it with the float model: accumulated and isolated error per layer.

    Each compared layer gets ``extra["isolated"]`` (metrics of that layer simulated alone on the
    float reference's inputs) when the simulator supports isolated runs (fp16, int8).
    ``report.meta["simulator"]`` says how many float tensors the target still has and how many
    were aligned. Other arguments as in :func:`simulate` and :func:`netdiff.pipeline.compare`.
    """
    from netdiff.pipeline import compare

    sim = simulate(model, kind, inputs, calibration=calibration, preprocess=preprocess,
                   calibration_limit=calibration_limit, options=options, model_options=model_options,
                   seed=seed, progress=progress)
    report = compare(sim.model, sim.target, sim.feeds, mapping=mapping, thresholds=thresholds, seed=seed,
                     diagnose=diagnose, precision=simulated_precision(sim), progress=progress)
    return _finish(report, sim, isolated)


def _finish(report: Report, sim: Simulation, isolated: bool) -> Report:
    """Isolated metrics, content placements and ``meta["simulator"]`` of a simulated comparison."""
    from netdiff.metrics import compute_metrics

    kind = sim.kind
    iso: dict[str, np.ndarray] = {}
    if isolated and sim.prepared is not None:
        iso = sim.prepared.isolated(sim.feeds, sim.reference)
    for layer in report.layers:
        if layer.name in iso and layer.metrics is not None:
            if "isolated" in layer.extra:
                layer.extra["isolated_rerun"] = layer.extra["isolated"]
            layer.extra["isolated"] = compute_metrics(sim.reference[layer.name].load(), iso[layer.name]).as_dict()
        tensor = sim.target.tensors.get(layer.target_name or "")
        if tensor is not None and tensor.meta.get("placed_by") == "content" and layer.match is not None:
            m = layer.match
            reason = str(tensor.meta.get("note") or f"{tensor.name!r} holds this value (quantizer renamed it)")
            layer.match = Match(m.reference, m.target, "content", m.transform, reason, m.alternatives)
    compared = {layer.target_name for layer in report.layers if layer.metrics is not None}
    report.meta["simulator"] = {
        "kind": kind, "summary": (sim.target.meta.get("quantization") or sim.target.meta.get("precision")
                                  or _simulator_summary(kind)),
        "float_tensors": sim.target.meta.get("float_tensors", len(sim.reference)),
        "in_target": sim.target.meta.get("placed", len(sim.target)),
        "aligned": sum(1 for t in sim.target if t.op_type != "Input" and t.name in compared),
        "content_checked": sim.target.meta.get("content_checked", 0),
        "isolated": len(iso), "calibration": sim.calibration,
    }
    return report


def simulated_precision(sim: Simulation) -> Precision | None:
    """The precision a simulated target computes in (int8: from its QDQ model's scales)."""
    if sim.kind == "int8" and sim.prepared is not None:
        from netdiff.converted import model_precision

        found = model_precision(sim.prepared.model, sim.prepared.float_model)
        return replace(found, source="simulator") if found is not None else None
    if sim.kind in ("fp16", "nnie8", "nnie16"):
        return Precision(sim.kind, "simulator")
    return None


def prepare_simulation(model: Any, kind: str, *, calibration: str | Path | Sequence[Mapping[str, np.ndarray]],
                       preprocess: Preprocess | None = None, calibration_limit: int | None = None,
                       options: Mapping[str, Any] | None = None, model_options: Mapping[str, Any] | None = None
                       ) -> Simulation:
    """Calibrate the ``kind`` target once for runs on many samples (``feeds``/dumps left empty).

    Raises:
        ModelError: ``model`` is a dump; NetdiffError: the simulator cannot be prepared once.
    """
    from netdiff.errors import ModelError, NetdiffError
    from netdiff.pipeline import open_source
    from netdiff.runners.base import Model
    from netdiff.simulators import get_simulator

    simulator = get_simulator(kind)
    source = open_source(model, None, model_options)
    if not isinstance(source, Model):
        raise ModelError(f"{model}: simulation needs a model file (.onnx, .prototxt), not a dump")
    prepare = getattr(simulator, "prepare", None)
    if prepare is None:
        raise NetdiffError(f"target {kind} cannot be calibrated once for several samples")
    if not simulator.needs_calibration:  # e.g. fp16: nothing to calibrate, whatever --calib says
        samples, calib_info = [], {"samples": 0, "source": f"none ({kind} needs no calibration)"}
    else:
        samples, calib_info = calibration_samples(source, calibration, {}, preprocess, calibration_limit)
    prepared = prepare(source.onnx_model(), samples, **dict(options or {}))
    empty = Dump(tensors={})
    return Simulation(kind, source, {}, empty, empty, prepared, calib_info)


def compare_simulation(sim: Simulation, feeds: Mapping[str, np.ndarray], *, thresholds: Thresholds | None = None,
                       mapping: Mapping[str, str] | str | Path | None = None, isolated: bool = True,
                       diagnose: bool = True, seed: int = 0) -> Report:
    """One sample of a prepared simulation compared in full (as :func:`run_simulated`)."""
    from dataclasses import replace

    from netdiff.pipeline import compare, run_model

    side = run_model(sim.model, dict(feeds), seed)
    target = sim.prepared.dump(side.feeds, side.dump)
    target.meta.setdefault("calibration_samples", sim.calibration.get("samples"))
    internal = [t.name for t in target
                if t.name not in side.dump and not t.origin_names and t.name not in target.target_only]
    target.target_only.extend(internal)
    one = replace(sim, feeds=side.feeds, reference=side.dump, target=target)
    report = compare(sim.model, target, side.feeds, mapping=mapping, thresholds=thresholds, seed=seed,
                     diagnose=diagnose, precision=simulated_precision(one))
    return _finish(report, one, isolated)


def _simulator_summary(kind: str) -> str:
    from netdiff.simulators import get_simulator

    return get_simulator(kind).summary
