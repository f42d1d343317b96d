"""Which layers int8 quantization (or float16) breaks, and the few to keep in float (mixed precision).

For every node the quantizer quantizes (or converts to float16), two numbers at the model outputs:

* **alone**: output cosine when only that node is quantized (its own cost);
* **float**: output cosine when everything but that node is quantized (what keeping it in float
  recovers, compared with the fully quantized model).

Then a small set to keep in float is grown in the order of recovery until the output cosine
reaches the target, and pruned of nodes that turn out unnecessary. A node that alone breaks the
target is added even when it recovers nothing by itself: float16 overflow needs the overflowing
node and its consumer kept together (the consumer's float16 input would overflow again).
Calibration runs once; each configuration costs one quantizer pass, one session and one
inference per evaluation input.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.calibration import Preprocess
from netdiff.errors import NetdiffError
from netdiff.inputs import InputsLike
from netdiff.progress import NullProgress, Progress


@dataclass(frozen=True)
class LayerSensitivity:
    """Sensitivity of one quantized node.

    Attributes:
        node: Node name (as ``nodes_to_exclude`` wants it).
        op_type: Its op type.
        alone_cosine: Output cosine with only this node quantized.
        float_cosine: Output cosine with every node but this one quantized.
        cost: ``1 - alone_cosine``.
        recovery: ``float_cosine`` minus the fully quantized output cosine.
    """

    node: str
    op_type: str
    alone_cosine: float
    float_cosine: float
    cost: float
    recovery: float


@dataclass
class SensitivityResult:
    """Rankings and the suggested mixed-precision exclusion list.

    Attributes:
        layers: Per-node sensitivity, most costly first.
        baseline_cosine: Output cosine of the fully quantized model.
        exclude: Nodes to keep in float, in the order they were added.
        final_cosine: Output cosine with ``exclude`` kept in float.
        target_cosine: The output cosine asked for.
        reached: True when ``final_cosine >= target_cosine``.
        evaluations: Quantized models evaluated.
        quantization: Quantization settings, in words.
        inputs: Number of evaluation inputs.
    """

    layers: list[LayerSensitivity]
    baseline_cosine: float
    exclude: list[str]
    final_cosine: float
    target_cosine: float
    reached: bool
    evaluations: int
    quantization: str = ""
    inputs: int = 1
    steps: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "int8"

    def by_recovery(self) -> list[LayerSensitivity]:
        """Layers ordered by how much keeping each one in float recovers."""
        return sorted(self.layers, key=lambda s: (-s.recovery, -s.cost))

    def snippet(self) -> str:
        """The mixed-precision setting, ready to paste: onnxruntime's ``nodes_to_exclude``, the
        NNIE layers to run at 16 bits (``[compile_mode] 2`` with their top names ending in ``_hp``),
        or Ascend ATC's ``--keep_dtype`` file for float16."""
        names = ", ".join(repr(n) for n in self.exclude)
        if self.kind.startswith("nnie"):
            return f"[compile_mode] 2, and rename the tops of these layers with the _hp suffix: [{names}]"
        if self.kind == "fp16":
            return (f"atc --precision_mode=force_fp16 --keep_dtype=keep_dtype.cfg, the file listing one op per line: "
                    f"[{names}]")
        return f"nodes_to_exclude=[{names}]"

    def keep_dtype_cfg(self) -> str:
        """Ascend ATC ``--keep_dtype`` file content: one op name per line."""
        return "".join(f"{name}\n" for name in self.exclude)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        data = asdict(self)
        key = {"nnie8": "hp_layers", "fp16": "keep_dtype"}.get(self.kind, "nodes_to_exclude")
        data[key] = list(self.exclude)
        return data


def output_cosine(reference: Sequence[Mapping[str, np.ndarray]], target: Sequence[Mapping[str, np.ndarray]]) -> float:
    """The lowest, over model outputs, cosine of all evaluation inputs' values taken together."""
    worst = 1.0
    for name in reference[0]:
        r = np.concatenate([np.asarray(x[name], np.float64).ravel() for x in reference])
        t = np.concatenate([np.asarray(x[name], np.float64).ravel() for x in target])
        if not np.all(np.isfinite(t)):
            return float("nan")
        nr, nt = float(np.linalg.norm(r)), float(np.linalg.norm(t))
        cos = 1.0 if nr == nt == 0 else (float(np.dot(r, t)) / (nr * nt) if nr > 0 and nt > 0 else 0.0)
        worst = min(worst, cos)
    return worst


class _Evaluator:
    """Quantize with an exclusion list (or a single node) and score the outputs; results cached."""

    def __init__(self, quantizer: Any, feeds: Sequence[Mapping[str, np.ndarray]], progress: Progress) -> None:
        from netdiff.runners.onnxrt import make_session

        self.quantizer = quantizer
        self.feeds = [dict(f) for f in feeds]
        self.progress = progress
        session = make_session(quantizer.model)
        self.names = [o.name for o in quantizer.model.graph.output]
        self.reference = [dict(zip(self.names, session.run(self.names, f))) for f in self.feeds]
        self.cache: dict[tuple[str, frozenset[str]], float] = {}

    def score(self, exclude: Collection[str] = (), only: str | None = None) -> float:
        from netdiff.runners.onnxrt import make_session

        key = ("only", frozenset([only])) if only else ("exclude", frozenset(exclude))
        if key not in self.cache:
            if hasattr(self.quantizer, "evaluate"):
                outputs = [self.quantizer.evaluate(f, self.names, exclude, only) for f in self.feeds]
            else:
                session = make_session(self.quantizer.quantize(exclude, [only] if only else None))
                outputs = [dict(zip(self.names, session.run(self.names, f))) for f in self.feeds]
            self.cache[key] = output_cosine(self.reference, outputs)
            self.progress.advance()
        return self.cache[key]


class _NnieQuantizer:
    """NNIE 8-bit simulation where chosen layers run at 16 bits (``_hp``); calibrated once.

    For NNIE there is no float: "alone" means this layer at 8 bits and every other at 16, and
    "recovery" this layer at 16 bits and every other at 8.
    """

    def __init__(self, model: Any, calibration: Sequence[Mapping[str, np.ndarray]], fold_bn: bool = True) -> None:
        from netdiff.runners.onnxrt import node_names
        from netdiff.simulators.nnie import WEIGHTED, PreparedNnie

        self.model = model
        self.prepared = PreparedNnie(model, calibration, 8, (), fold_bn)
        names = node_names(model)
        self.nodes = [names[i] for i, n in enumerate(model.graph.node) if n.op_type in WEIGHTED]

    def quantizable_nodes(self) -> list[str]:
        """Layers whose precision is worth choosing (the weighted ones)."""
        return list(self.nodes)

    def evaluate(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], exclude: Collection[str] = (),
                 only: str | None = None) -> dict[str, np.ndarray]:
        """Graph outputs with ``exclude`` at 16 bits (or everything but ``only``)."""
        from netdiff.simulators.nnie import simulate_nnie

        p = self.prepared
        hp = [n for n in self.nodes if n != only] if only else list(exclude)
        dump = simulate_nnie(self.model, feeds, p.calibration, 8, hp, p.fold_bn, tops=p.tops)
        return {name: dump[name].load() for name in outputs}


class _Fp16Quantizer:
    """The model in float16 with chosen nodes kept in float32 (Ascend ``--keep_dtype``)."""

    def __init__(self, model: Any, keep: Collection[str] = ()) -> None:
        from netdiff.simulators.fp16 import elem_types, half_nodes, prepare_fp16

        self.model = model
        self.types = elem_types(model)
        fallback = prepare_fp16(model, keep).meta.get("fp32_fallback", "")  # ops without a float16 kernel
        self.keep = set(keep) | {n for n in fallback.split(",") if n}
        self.nodes = half_nodes(model, self.types, self.keep)
        self._session_key: tuple[frozenset[str], str | None] | None = None
        self._session: Any = None
        self._halves: dict[str, Any] = {}  # float16 initializers, converted once

    def quantizable_nodes(self) -> list[str]:
        """Nodes that run in float16 and produce float data."""
        return list(self.nodes)

    def quantize(self, exclude: Collection[str] = (), only: Sequence[str] | None = None) -> Any:
        """The float16 model with ``exclude`` kept in float32 (or every node but ``only``)."""
        from netdiff.runners.onnxrt import node_names
        from netdiff.simulators.fp16 import convert_to_fp16

        keep = self.keep | set(exclude)
        if only:
            keep |= set(node_names(self.model)) - set(only)
        return convert_to_fp16(self.model, keep, self.types, self._halves)

    def evaluate(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], exclude: Collection[str] = (),
                 only: str | None = None) -> dict[str, np.ndarray]:
        """Graph outputs with ``exclude`` kept in float32 (or every node but ``only``).

        The session marks every tensor as an output: onnxruntime's CPU provider has no float16
        kernel for most ops and, left alone, would run whole chains of them in float32 between two
        Casts; a float16 graph output makes it round each tensor to float16 as the device does.
        """
        from netdiff.runners.onnxrt import make_session

        key = (frozenset(exclude), only)
        if self._session_key != key:
            model = self.quantize(exclude, [only] if only else None)
            self._session = make_session(model, outputs=[o for n in model.graph.node for o in n.output if o])
            self._session_key = key
        return dict(zip(outputs, self._session.run(list(outputs), dict(feeds))))


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def analyze_sensitivity(model: Any, inputs: InputsLike = None, *, kind: str = "int8",
                        calibration: str | Path | Sequence[Mapping[str, np.ndarray]] | None = None,
                        preprocess: Preprocess | None = None, calibration_limit: int | None = None,
                        options: Mapping[str, Any] | None = None, target_cosine: float = 0.999,
                        max_exclude: int | None = None, eval_limit: int = 4, seed: int = 0,
                        model_options: Mapping[str, Any] | None = None,
                        progress: Progress | None = None) -> SensitivityResult:
    """Rank layers by int8 (NNIE 8-bit, float16) sensitivity and find a small set to keep in float (or 16 bits).

    Args:
        model: Float model path or :class:`~netdiff.runners.base.Model`.
        inputs: Evaluation inputs; when None, up to ``eval_limit`` calibration samples.
        kind: "int8" (nodes kept in float), "nnie8" (layers run at 16 bits, ``_hp``) or "fp16"
            (nodes kept in float32, Ascend ``--keep_dtype``).
        calibration: Calibration directory/file or list of feed dicts (default: the inputs).
        preprocess: How calibration images become inputs.
        calibration_limit: Use at most this many calibration samples.
        options: int8 simulator options (per_channel, calibrate, symmetric, ...); for fp16, keep_fp32.
        target_cosine: Output cosine the exclusion list must reach.
        max_exclude: Stop after this many excluded nodes.
        eval_limit: Calibration samples used for evaluation when ``inputs`` is None.
        seed: Seed of the random input when neither inputs nor calibration are given.
        model_options: Runner options for the float model.
        progress: Receives one unit per evaluated configuration.
    """
    from netdiff.pipeline import open_source
    from netdiff.inputs import resolve_feeds
    from netdiff.runners.base import Model
    from netdiff.simulators.int8 import Int8Config, Int8Quantizer
    from netdiff.simulators.run import calibration_samples

    if kind not in ("int8", "nnie8", "fp16"):
        raise NetdiffError(f"sensitivity supports --target int8, nnie8 or fp16 (got {kind!r})")
    if not 0 < target_cosine <= 1:
        raise NetdiffError(f"--target-cosine must be in (0, 1], got {target_cosine}")
    source = open_source(model, None, model_options)
    if not isinstance(source, Model):
        raise NetdiffError(f"{model}: sensitivity needs a model file (.onnx, .prototxt), not a dump")
    progress = progress or NullProgress()
    specs = source.input_specs()
    if inputs is None and calibration is not None:
        samples, _ = calibration_samples(source, calibration, {}, preprocess, calibration_limit)
        feeds = samples[:eval_limit]
    else:
        first, _ = resolve_feeds(specs, inputs, seed=seed)
        feeds = [first]
        samples, _ = calibration_samples(source, calibration, first, preprocess, calibration_limit)
    if kind == "nnie8":
        opts = dict(options or {})
        unknown = set(opts) - {"fold_bn"}
        if unknown:
            raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to nnie8 sensitivity")
        fold = str(opts.get("fold_bn", "true")).strip().lower() not in ("0", "false", "no", "off")
        quantizer: Any = _NnieQuantizer(source.onnx_model(), samples, fold)
        candidates = quantizer.quantizable_nodes()
        described = "NNIE 8-bit log format; candidate layers at 16 bits (_hp)"
    elif kind == "fp16":
        quantizer = _Fp16Quantizer(source.onnx_model(), _fp16_keep(options))
        candidates = quantizer.quantizable_nodes()
        described = "float16; candidate nodes kept in float32"
    else:
        config = Int8Config.from_options(dict(options or {}))
        quantizer = Int8Quantizer(source.onnx_model(), samples, config)
        candidates = quantizer.quantizable_nodes(quantizer.quantize())
        described = config.describe()
    op_types = {n.name: n.op_type for n in quantizer.model.graph.node}
    progress.start("sensitivity", 1 + 2 * len(candidates) + len(candidates))
    try:
        evaluator = _Evaluator(quantizer, feeds, progress)
        baseline = evaluator.score()
        layers = []
        for node in candidates:
            alone = evaluator.score(only=node)
            floated = evaluator.score(exclude=[node])
            layers.append(LayerSensitivity(node, op_types.get(node, ""), alone, floated,
                                           1.0 - alone if not math.isnan(alone) else math.inf,
                                           _nan_low(floated) - _nan_low(baseline) if not math.isnan(baseline) else math.inf))
        layers.sort(key=lambda s: (-s.cost, s.node))
        exclude, current, steps = _grow(evaluator, layers, baseline, target_cosine, max_exclude)
    finally:
        progress.stop()
    return SensitivityResult(layers, baseline, exclude, current, target_cosine, current >= target_cosine,
                             len(evaluator.cache), described, len(feeds), steps, kind)


def _fp16_keep(options: Mapping[str, Any] | None) -> list[str]:
    opts = dict(options or {})
    unknown = set(opts) - {"keep_fp32"}
    if unknown:
        raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to fp16 sensitivity")
    keep = opts.get("keep_fp32") or ()
    return [k.strip() for k in keep.split(",") if k.strip()] if isinstance(keep, str) else list(keep)


def _grow(evaluator: _Evaluator, layers: list[LayerSensitivity], baseline: float, target: float,
          max_exclude: int | None) -> tuple[list[str], float, list[dict[str, Any]]]:
    """Add nodes in order of recovery while they help, until ``target``; then drop unneeded ones.

    A node whose cost alone already breaks the target is added even when it helps nothing by
    itself (it needs a partner: float16 overflow at a node and its consumer's input); the pruning
    pass removes it again if it turns out unnecessary.
    """
    order = sorted(layers, key=lambda s: (-s.recovery, -s.cost, s.node))
    exclude: list[str] = []
    current = _nan_low(baseline)
    steps: list[dict[str, Any]] = []
    for layer in order:
        if current >= target or (max_exclude is not None and len(exclude) >= max_exclude):
            break
        score = _nan_low(evaluator.score(exclude=[*exclude, layer.node]))
        if score > current or layer.cost > 1.0 - target:
            exclude.append(layer.node)
            current = max(current, score)
            steps.append({"add": layer.node, "cosine": score})
    floor = target if current >= target else current
    for node in list(exclude):
        rest = [n for n in exclude if n != node]
        score = _nan_low(evaluator.score(exclude=rest))
        if score >= floor:
            exclude = rest
            current = score if current >= target else max(current, score)
            steps.append({"drop": node, "cosine": score})
    current = _nan_low(evaluator.score(exclude=exclude))
    return exclude, current, steps
