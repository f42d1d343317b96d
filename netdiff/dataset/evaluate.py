"""The per-sample work: run both sides once, measure every planned pair, keep a small record.

A :class:`Plan` is made once from the full comparison of the first sample (which pairs, which
layout transform, which compared ancestors); a :class:`Job` says how to rebuild both sides in
another process; an :class:`Evaluator` (built once per process) turns a sample into a
:class:`SampleResult` of two float arrays and a task record, nothing else.

Per-sample metrics are cosine and rel_l2 only: from the metrics' C kernel sums (one pass, no
copy) when it is built, else in float64 over all the pairs at once (the formulas of
docs/metrics.md); a pair with a non-finite or all-zero side goes through
:func:`netdiff.metrics.compute_metrics` and the report's own status rule.
"""

from __future__ import annotations

import math
import pickle
from itertools import repeat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import NetdiffError
from netdiff.types import Dump, LayerResult, Report, Tensor, Thresholds, Transform


@dataclass(frozen=True)
class OutputTask:
    """How one graph output is judged: ``kind`` is "classification", "detection" or "other"."""

    output: str
    kind: str
    index: int
    scores: str | None = None  # detection: the scores output paired with these boxes


@dataclass
class Plan:
    """What every sample measures, fixed by the first sample's full comparison.

    Attributes:
        names: Reference names of the compared layers, in report order.
        targets: Target tensor name of each.
        transforms: Layout transform of each (None when the target is used as it is).
        ancestors: Indices of each layer's nearest compared ancestors (for the first divergence).
        outputs: Indices (into ``names``) of the reference graph outputs.
        tasks: How each graph output is judged.
        thresholds: Divergence thresholds.
        precision: The target's :class:`~netdiff.types.Precision` (from the first sample's report),
            or None: with it, each sample's layers beyond the thresholds get their expected noise
            (:mod:`netdiff.noise`, on that sample's reference values) and may be ``noisy``.
        heads: Detector heads (:class:`netdiff.detection.DetectionHead`) of the reference.
        head_layers: The layer results (alignment) of the heads' tensors, from the first sample.
        score_threshold: Detector boxes kept at a score of at least this.
    """

    names: list[str]
    targets: list[str]
    transforms: list[Transform | None]
    ancestors: list[tuple[int, ...]]
    outputs: list[int]
    tasks: list[OutputTask]
    thresholds: Thresholds
    precision: Any = None
    heads: list[Any] = field(default_factory=list)
    head_layers: dict[str, Any] = field(default_factory=dict)
    score_threshold: float = 0.5


def plan_from_report(report: Report, tasks: Sequence[OutputTask], score_threshold: float = 0.5) -> Plan:
    """The plan of the compared layers of ``report`` (one sample's full comparison)."""
    from dataclasses import fields as dc_fields

    from netdiff.detection import DetectionHead
    from netdiff.verdict import _compared_ancestors

    compared = [x for x in report.layers if x.metrics is not None and x.target_name is not None]
    index = {x.name: i for i, x in enumerate(compared)}
    by_name = {x.name: x for x in report.layers}
    memo: dict[str, list[Any]] = {}
    ancestors = [tuple(sorted(index[u.name] for u in _compared_ancestors(x.inputs, by_name, memo, set())
                              if u.name in index)) for x in compared]
    transforms = []
    for x in compared:
        t = x.match.transform if x.match is not None else None
        identity = t is None or (t.permutation is None and not t.reshape and t.crop is None and not t.squeeze
                                 and tuple(x.shape or ()) == tuple(x.target_shape or ()))
        transforms.append(None if identity else t)
    outputs = [index[n] for n in report.meta.get("graph_outputs", []) if n in index]
    known = {f.name for f in dc_fields(DetectionHead)}
    heads = [DetectionHead(**{k: v for k, v in entry.items() if k in known})
             for entry in report.meta.get("detection") or [] if entry.get("compared")]
    head_layers = {}
    for head in heads:
        for name in (head.scores, head.boxes):
            if name and name in by_name:
                x = by_name[name]
                head_layers[name] = LayerResult(x.name, x.target_name, x.op_type, x.order, x.status, match=x.match,
                                                shape=x.shape)
    precision = None
    info = report.meta.get("precision")
    if isinstance(info, Mapping) and info.get("kind"):
        from netdiff.types import Precision

        precision = Precision(info["kind"], info.get("source", "hint"), info.get("activation_bits"),
                              info.get("weight_bits"), bool(info.get("per_channel", False)))
    return Plan([x.name for x in compared], [x.target_name for x in compared], transforms, ancestors, outputs,
                list(tasks), report.thresholds, precision, heads, head_layers, score_threshold)


@dataclass
class SampleResult:
    """What one sample leaves behind: per planned layer cosine, rel_l2 and status, and a task record."""

    index: int
    id: str
    cosine: np.ndarray
    rel_l2: np.ndarray
    status: list[str]
    first_divergence: int | None
    task: dict[str, Any] = field(default_factory=dict)
    boxes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# --- the two sides, rebuilt in each process -------------------------------------------------------------


@dataclass
class ModelSource:
    """A model side: a path (with format and runner options), or a serialized ONNX model."""

    path: str | None = None
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    onnx_bytes: bytes | None = None

    @classmethod
    def of(cls, model: Any, format: str | None = None, options: Mapping[str, Any] | None = None) -> ModelSource:
        """From what the pipeline accepts (a path or a :class:`~netdiff.runners.Model`)."""
        from netdiff.runners.onnxrt import OnnxModel

        if isinstance(model, OnnxModel) and (model._model is not None or not Path(model.path).is_file()):
            return cls(onnx_bytes=model.onnx_model().SerializeToString())
        if hasattr(model, "path") and not isinstance(model, (str, Path)):
            opts = dict(getattr(model, "options", {}) or options or {})
            if getattr(model, "weights", None) is not None:
                opts["weights"] = str(model.weights)
            return cls(path=str(model.path), format=getattr(model, "name", None) or format, options=opts)
        return cls(path=str(model), format=format, options=dict(options or {}))

    def open(self) -> Any:
        from netdiff.pipeline import open_source

        if self.onnx_bytes is not None:
            import onnx

            from netdiff.runners.onnxrt import OnnxModel

            return OnnxModel.from_proto(onnx.load_from_string(self.onnx_bytes))
        return open_source(self.path, self.format, self.options)


@dataclass
class Job:
    """Everything a worker needs (picklable): both sides, the plan and how to read samples.

    ``target_kind`` is "model" (a second model run on each sample), "dumps" (a directory of
    per-sample dumps ``<dir>/<sample_id>``) or "simulated" (a prepared simulator, pickled).
    ``sources`` says, for a converted target model (QDQ, QOperator), which raw tensor holds each
    planned target tensor (:func:`converted_sources`); None: the raw names are the planned ones.
    """

    reference: ModelSource
    target_kind: str
    plan: Plan
    target: ModelSource | None = None
    dumps: str | None = None
    dump_format: str | None = None
    dump_options: dict[str, Any] = field(default_factory=dict)
    prepared: bytes | None = None
    preprocess: Any = None
    sources: dict[str, tuple] | None = None
    key: str = ""


class _ModelRunner:
    """Runs a model and returns every tensor as name -> array (ONNX: one session, every node output,
    or only the node outputs in ``keep``: the values are the same, fewer are copied out)."""

    def __init__(self, model: Any, keep: set[str] | None = None) -> None:
        from netdiff.runners.onnxrt import OnnxModel

        self.model = model
        self.specs = {s.name: s for s in model.input_specs()}
        self._session = None
        self.structure: dict[str, tuple[str | None, tuple[str, ...], str | None]] = {}
        self.last_dump: Dump | None = None
        self._template: Dump | None = None
        self._values: Mapping[str, np.ndarray] = {}
        if isinstance(model, OnnxModel):
            from netdiff.runners.onnxrt import make_session, node_outputs

            proto = model.onnx_model()
            outputs = node_outputs(proto)
            self._names = [o.name for o in outputs if keep is None or o.name in keep]
            self.structure = {o.name: (o.op_type, tuple(o.inputs), o.node_name) for o in outputs}
            self._session = make_session(proto, outputs=self._names)
        self._bindings: dict[int, tuple[Any, tuple, list[np.ndarray]]] | None = {} if self._session else None

    def dump(self, values: Mapping[str, np.ndarray]) -> Dump:
        """The values of the last run as a :class:`Dump` with op types, inputs and node names."""
        if self.last_dump is not None:
            return self.last_dump
        self._values = values
        if self._template is None or self._template.names != list(values):
            tensors = {}
            for name, value in values.items():
                op, inputs, node = self.structure.get(name, ("Input", (), None))
                value = np.asarray(value)
                tensors[name] = Tensor(name, tuple(value.shape), value.dtype.name, loader=self._loader(name),
                                       op_type=op, inputs=inputs, meta={"node": node} if node else {})
            self._template = Dump(tensors=tensors)  # built once: each sample only swaps the values
        return self._template

    def _loader(self, name: str) -> Any:
        return lambda: np.asarray(self._values[name])

    def run(self, feeds: Mapping[str, np.ndarray], slot: int | None = None) -> dict[str, np.ndarray]:
        """Every tensor of one run. With a ``slot`` (0 <= slot < :data:`BLOCK`), an ONNX session writes
        into that slot's output arrays (onnxruntime I/O binding, bound once): no per-run allocation
        and copy; the values are the same, and stay valid until the slot runs again."""
        feeds = {n: np.asarray(feeds[n]).astype(s.dtype, copy=False) for n, s in self.specs.items() if n in feeds}
        if self._session is None:
            self.last_dump = self.model.run(feeds)
            return {t.name: t.load() for t in self.last_dump}
        from netdiff.errors import ReferenceRunError

        try:
            values = self._bound_run(slot, feeds) if slot is not None and self._bindings is not None else None
            if values is None:
                values = self._session.run(self._names, feeds)
                if slot is not None and self._bindings is not None:
                    self._bind(slot, feeds, values)
        except Exception as e:  # onnxruntime's own exception types
            raise ReferenceRunError(f"{self.model.path}: onnxruntime failed: {str(e).splitlines()[0]}") from e
        out = dict(feeds)
        out.update(zip(self._names, values))
        return out

    def _bound_run(self, slot: int, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray] | None:
        """Run into ``slot``'s bound outputs, or None (no binding yet, other input shapes, or the
        outputs' shapes changed: onnxruntime refuses a bound array of another shape)."""
        found = self._bindings.get(slot)
        if found is None:
            return None
        io, shapes, arrays = found
        if tuple((n, v.shape, v.dtype) for n, v in feeds.items()) != shapes:
            return None
        for name, value in feeds.items():
            io.bind_cpu_input(name, value if value.flags.c_contiguous else np.ascontiguousarray(value))
        try:
            self._session.run_with_iobinding(io)
        except Exception:  # e.g. a data-dependent output shape: plain runs from now on
            self._bindings = None
            return None
        return arrays

    def _bind(self, slot: int, feeds: Mapping[str, np.ndarray], values: list[Any]) -> None:
        """Bind ``slot``'s outputs to arrays shaped as ``values`` (none bound for a sequence, map,
        string or empty output, or when onnxruntime refuses: plain runs from then on)."""
        arrays = [np.empty_like(v, order="C") if isinstance(v, np.ndarray) and v.dtype.kind in "fiub" and v.size
                  else None for v in values]
        if any(a is None for a in arrays):
            self._bindings = None
            return
        try:
            io = self._session.io_binding()
            for name, array in zip(self._names, arrays):
                io.bind_output(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)
        except Exception:  # onnxruntime's own exception types
            self._bindings = None
            return
        self._bindings[slot] = (io, tuple((n, v.shape, v.dtype) for n, v in feeds.items()), arrays)


#: Samples run stage by stage together: at most this many samples' tensors are held at once, and
#: at most :data:`BLOCK_BYTES` of them (a large model runs one sample at a time).
BLOCK = 16
BLOCK_BYTES = 32 << 20


class Evaluator:
    """Both sides of a :class:`Job`, built once; :meth:`evaluate` measures one sample."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.plan = job.plan
        self.reference = _ModelRunner(job.reference.open())
        self.specs = list(self.reference.model.input_specs())
        self.target: Any = None
        if job.target_kind == "model":
            self.target = _ModelRunner(job.target.open(), keep=target_needs(job))
        elif job.target_kind == "simulated":
            self.target = pickle.loads(job.prepared)
        self._weights: dict[str, Any] | None = None
        self._steps: tuple[tuple[str, ...], list] | None = None
        self._block_size = 0  # set by the first measured sample

    def feeds(self, sample: Any) -> dict[str, np.ndarray]:
        """The sample's model inputs (a single-input model's ``.npy`` sample read directly, as
        :func:`netdiff.inputs.resolve_feeds` reads it)."""
        inputs = sample.inputs
        if len(self.specs) == 1 and isinstance(inputs, Path) and inputs.suffix == ".npy":
            from netdiff.inputs import fit_to_spec, load_array

            spec = self.specs[0]
            return {spec.name: fit_to_spec(load_array(inputs, f"input {spec.name}"), spec)}
        from netdiff.multisample import sample_feeds

        return sample_feeds(sample, self.specs, self.job.preprocess)

    def target_values(self, sample: Any, feeds: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                      slot: int | None = None) -> dict[str, np.ndarray]:
        """Every tensor of the target side for one sample (a target model runs into ``slot``'s outputs)."""
        if self.job.target_kind == "model":
            raw = self.target.run(feeds, slot)
            return raw if self.job.sources is None else from_sources(self.job.sources, raw)
        if self.job.target_kind == "simulated":
            dump = self.target.dump(feeds, _as_dump(ref))
            return {t.name: t.load() for t in dump}
        from netdiff.readers import read_dump

        dump = read_dump(Path(self.job.dumps) / sample.id, format=self.job.dump_format, **self.job.dump_options)
        return {t.name: t.load() for t in dump if not t.error}

    def evaluate(self, index: int, sample: Any) -> SampleResult:
        """Measure one sample (a sample that cannot be run gives an ``error`` record, not an exception)."""
        return self.evaluate_many([(index, sample)])[0]

    def evaluate_many(self, batch: Sequence[tuple[int, Any]]) -> list[SampleResult]:
        """Measure ``(index, sample)`` pairs, :data:`BLOCK` at a time: the reference runs over a block,
        then the target over it, then each sample is measured (each stage's code and weights stay in
        the caches: on small models that is a third of the per-sample cost). Results are those of
        measuring each sample alone."""
        out: list[SampleResult] = []
        start = 0
        while start < len(batch):
            size = self.block_size
            out.extend(self._block(batch[start:start + size]))
            start += size
        return out

    @property
    def block_size(self) -> int:
        """Samples per block: 1 until a sample was measured, then as many as fit in :data:`BLOCK_BYTES`."""
        return self._block_size or 1

    def _size_blocks(self, ref: Mapping[str, Any], tgt: Mapping[str, Any]) -> None:
        held = sum(getattr(v, "nbytes", 0) for v in ref.values()) + sum(getattr(v, "nbytes", 0) for v in tgt.values())
        self._block_size = max(1, min(BLOCK, BLOCK_BYTES // max(1, held)))

    def _block(self, block: Sequence[tuple[int, Any]]) -> list[SampleResult]:
        errors: dict[int, str] = {}
        feeds: list[Any] = [None] * len(block)
        refs: list[Any] = [None] * len(block)
        tgts: list[Any] = [None] * len(block)
        for stage in range(3):
            for k, (_, sample) in enumerate(block):
                if k in errors:
                    continue
                try:
                    if stage == 0:
                        feeds[k] = self.feeds(sample)
                    elif stage == 1:
                        refs[k] = self.reference.run(feeds[k], slot=k)
                    else:
                        tgts[k] = self.target_values(sample, feeds[k], refs[k], slot=k)
                except NetdiffError as e:
                    errors[k] = str(e).splitlines()[0] if str(e) else type(e).__name__
        out = []
        n = len(self.plan.names)
        for k, (index, sample) in enumerate(block):
            if k in errors:
                out.append(SampleResult(index, sample.id, np.full(n, np.nan), np.full(n, np.nan), ["error"] * n,
                                        None, error=errors[k]))
            else:
                if not self._block_size:
                    self._size_blocks(refs[k], tgts[k])
                out.append(self._measured(index, sample, refs[k], tgts[k]))
            feeds[k] = refs[k] = tgts[k] = None  # each sample's tensors freed once measured
        return out

    def _measured(self, index: int, sample: Any, ref: dict[str, np.ndarray], tgt: dict[str, np.ndarray]
                  ) -> SampleResult:
        stats: dict[str, tuple[float, float]] = {}
        cosine, rel, status = measure(self.plan, ref, tgt, stats)
        if self.plan.precision is not None and "diverged" in status:
            self._within_noise(ref, rel, status, stats)
        first = first_divergence(self.plan, status)
        from netdiff.dataset.task import sample_task

        task = sample_task(self.plan, ref, tgt)
        boxes = sample_boxes(self.plan, ref, tgt) if self.plan.heads else {}
        return SampleResult(index, sample.id, cosine, rel, status, first, task, boxes)

    def _within_noise(self, ref: Mapping[str, np.ndarray], rel: np.ndarray, status: list[str],
                      stats: Mapping[str, tuple[float, float]] | None = None) -> None:
        """Re-judge the diverged layers against this sample's expected noise (``noisy`` within it):
        :func:`netdiff.noise.assign_expected_noise` over the reference's tensors, with everything
        that does not depend on the sample (op types, inputs, weights) looked up once."""
        from netdiff.noise import _rms, layer_noise
        from netdiff.verdict import MAX_NOISY_REL_L2

        steps = self._noise_steps(ref)
        stats = stats or {}
        precision = self.plan.precision
        noise: dict[str, tuple[float, float]] = {}  # absolute (fresh, carried) noise rms per tensor
        rms: dict[str, float] = {}
        expected: dict[str, float] = {}
        zero = (0.0, 0.0)
        for name, op_type, weight, inputs in steps:
            known = stats.get(name)
            if known is not None:
                value, (r, span) = None, known
            else:
                value = ref.get(name)
                if value is None:
                    continue
                value = np.asarray(value)
                if value.dtype.kind != "f":
                    noise[name], rms[name] = zero, 0.0
                    continue
                r, span = _rms(value), None
            rms[name] = r
            noise[name] = fresh, carried = layer_noise(
                value, r, op_type, precision, weight, [(*noise.get(n, zero), rms.get(n, 0.0)) for n in inputs],
                span=span)
            total = math.hypot(fresh, carried)
            if r > 0 and math.isfinite(total):
                expected[name] = total / r
        th = self.plan.thresholds
        limit = MAX_NOISY_REL_L2
        for i, s in enumerate(status):
            x = expected.get(self.plan.names[i])
            if s == "diverged" and x is not None and not math.isnan(rel[i]) \
                    and rel[i] <= min(th.noise_factor * x, limit):
                status[i] = "noisy"

    def _noise_steps(self, ref: Mapping[str, np.ndarray]) -> list[tuple[str, Any, Any, tuple[str, ...]]]:
        """(name, op type, weight, inputs) of every reference tensor in order, built once (the noise
        model's part that does not depend on the sample)."""
        names = tuple(ref)
        if self._steps is None or self._steps[0] != names:
            from netdiff.noise import layer_weights

            if self._weights is None:
                try:
                    self._weights = layer_weights(self.reference.model.onnx_model())
                except Exception:  # a runner without an ONNX form: activations only
                    self._weights = {}
            dump = self.reference.dump(ref)
            steps = []
            for t in dump:
                node = str(t.meta.get("node")) if t.meta and t.meta.get("node") else None
                steps.append((t.name, t.op_type, self._weights.get(node) if node else None, tuple(t.inputs)))
            self._steps = (names, steps)
        return self._steps[1]


def target_needs(job: Job) -> set[str]:
    """The raw target tensors a sample's measurement reads (a target model runs only those)."""
    plan = job.plan
    if job.sources is not None:
        return {how[1] for how in job.sources.values()}
    return set(plan.targets) | {x.target_name for x in plan.head_layers.values() if x.target_name}


def _as_dump(values: Mapping[str, np.ndarray]) -> Dump:
    return Dump(tensors={n: Tensor.from_array(n, np.asarray(v)) for n, v in values.items()})


# --- metrics of all pairs at once --------------------------------------------------------------------------


def measure(plan: Plan, ref: Mapping[str, np.ndarray], tgt: Mapping[str, np.ndarray],
            stats: dict[str, tuple[float, float]] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cosine, rel_l2 and status of every planned pair of one sample (and into ``stats``, the
    reference's (rms, max - min) of the pairs the kernel measured, for the noise model).

    Every pair the metrics kernel takes is measured in one call (``stats_pairs``: the sums of
    ``stats``, bit-identical) and turned into metrics over all the pairs at once with the formulas
    of :func:`netdiff.metrics.cosine_from_sums`; the others go through :func:`_measure_pairs`."""
    from netdiff.metrics import EPS, _fast

    n = len(plan.names)
    cosine, rel = np.full(n, np.nan), np.full(n, np.nan)
    status = ["error"] * n
    rs = list(map(ref.get, plan.names))
    ts = list(map(tgt.get, plan.targets))
    for i, transform in enumerate(plan.transforms):
        if transform is None:
            continue
        r, t = rs[i], ts[i]
        if r is None or t is None:
            continue
        try:
            ts[i] = transform.apply(np.asarray(t), tuple(np.asarray(r).shape))
        except ValueError:
            ts[i] = None  # not comparable: "error", as a missing tensor
    if _fast is None or not hasattr(_fast, "stats_pairs"):
        _measure_pairs(plan, range(n), rs, ts, cosine, rel, status, stats)
        return cosine, rel, status
    sums = np.empty((n, _PAIR_FIELDS))
    taken = _fast.stats_pairs(rs, ts, EPS, sums)
    if taken < n:
        _measure_pairs(plan, np.flatnonzero(sums[:, 0] != 1.0).tolist(), rs, ts, cosine, rel, status, stats)
    if taken:
        _from_sums(plan, sums, cosine, rel, status, stats, rs, ts)
    return cosine, rel, status


_PAIR_FIELDS = 10  # the columns stats_pairs writes (netdiff/_fastmetrics.c)
_STATUS = ("diverged", "ok")


def _from_sums(plan: Plan, sums: np.ndarray, cosine: np.ndarray, rel: np.ndarray, status: list[str],
               stats: dict[str, tuple[float, float]] | None, rs: list[Any], ts: list[Any]) -> None:
    """Metrics of the pairs ``stats_pairs`` took, all at once: :func:`netdiff.metrics.cosine_from_sums`
    and sqrt(dd / rr) in the same float64 operations (``** 2`` in Python as there: libm's pow), the
    report's status rule; a pair with NaN/Inf or an all-zero side goes through :func:`_exact`.
    (No floating-point warning can arise: the pairs computed here have finite sums, rr > 0, xx > 0.)"""
    from netdiff.metrics import NEAR

    taken, rr, xx, rx, dd, count, s2, lo, hi, bad = sums.T
    taken = taken == 1.0
    if stats is not None:
        seen = taken & (count > 0)
        names = plan.names
        if seen.all():
            stats.update(zip(names, zip(np.sqrt(s2 / count).tolist(), (hi - lo).tolist())))
        else:
            seen = np.flatnonzero(seen)
            stats.update(zip(map(names.__getitem__, seen.tolist()),
                             zip(np.sqrt(s2[seen] / count[seen]).tolist(), (hi[seen] - lo[seen]).tolist())))
    good = taken & (bad == 0) & (rr > 0) & (xx > 0)
    th = plan.thresholds
    every = good.all()
    if not every:
        for i in np.flatnonzero(taken & ~good).tolist():
            cosine[i], rel[i], status[i] = _exact(np.asarray(rs[i]), np.asarray(ts[i]), th)
        idx = np.flatnonzero(good)
        if not idx.size:
            return
        rr, xx, rx, dd = rr[idx], xx[idx], rx[idx], dd[idx]
    rn, xn = np.sqrt(rr), np.sqrt(xx)
    square = np.array(list(map(float.__pow__, (xn - rn).tolist(), repeat(2.0))))  # Python's ** (libm pow)
    c = np.where(dd <= (NEAR * NEAR) * np.minimum(rr, xx), 1.0 - (dd - square) / (2.0 * rn * xn), rx / (rn * xn))
    c = np.maximum(np.minimum(c, 1.0), -1.0)
    e = np.sqrt(dd / rr)
    ok = ((c >= th.cosine) & (e <= th.rel_l2)).tolist()
    if every:
        cosine[:], rel[:] = c, e
        status[:] = map(_STATUS.__getitem__, ok)
        return
    cosine[idx], rel[idx] = c, e
    for i, k in zip(idx.tolist(), ok):
        status[i] = _STATUS[k]


def _measure_pairs(plan: Plan, indices: Any, rs: list[Any], ts: list[Any], cosine: np.ndarray, rel: np.ndarray,
                   status: list[str], stats: dict[str, tuple[float, float]] | None) -> None:
    """The pairs ``indices`` one by one (targets already transformed): the metrics kernel's ``stats``
    when both sides are contiguous floats, else all at once in float64 (:func:`_measure_numpy`)."""
    from netdiff.metrics import EPS, _fast, cosine_from_sums

    th = plan.thresholds
    min_cos, max_rel = th.cosine, th.rel_l2
    stats_fn = _fast.stats if _fast is not None else None
    ndarray = np.ndarray
    rest, rest_t, idx = [], [], []
    for i in indices:
        r, t = rs[i], ts[i]
        if r is None or t is None:
            continue
        if type(r) is not ndarray:
            r = np.asarray(r)
        if type(t) is not ndarray:
            t = np.asarray(t)
        if t.size != r.size or r.size == 0 or r.dtype.kind not in "fiub" or t.dtype.kind not in "fiub":
            continue
        kr, kt = _kind(r.dtype), _kind(t.dtype)
        if stats_fn is not None and kr is not None and kt is not None and r.flags.c_contiguous \
                and t.flags.c_contiguous:
            d = stats_fn(r.reshape(-1), t.reshape(-1), kr, kt, EPS, None, 0, 0, 0)  # the metrics' C kernel
            side, other = d["ref"], d["tgt"]
            if stats is not None and side[0]:
                stats[plan.names[i]] = (math.sqrt(side[4] / side[0]), side[6] - side[5])
            rr, xx = d["rr"], d["xx"]
            if not (side[1] + side[2] + other[1] + other[2]) and rr > 0 and xx > 0:
                c = min(cosine_from_sums(rr, xx, d["dd"], d["rx"]), 1.0)
                e = math.sqrt(d["dd"] / rr)
                cosine[i], rel[i] = c, e
                status[i] = "ok" if (c >= min_cos and e <= max_rel) else "diverged"
            else:
                cosine[i], rel[i], status[i] = _exact(r, t, th)
            continue
        rest.append(r.reshape(-1))
        rest_t.append(t.reshape(-1))
        idx.append(i)
    if idx:
        _measure_numpy(rest, rest_t, idx, th, cosine, rel, status)


_KIND_OF: dict[Any, int] = {}


def _kind(dtype: Any) -> int | None:
    """The metrics kernel's code of a dtype (``dtype.name`` is slow in numpy 2: looked up once)."""
    if dtype not in _KIND_OF:
        from netdiff.metrics import _KINDS

        _KIND_OF[dtype] = _KINDS.get(dtype.name) if dtype.isnative else None
    return _KIND_OF[dtype]


def _measure_numpy(rs: list[np.ndarray], ts: list[np.ndarray], idx: list[int], th: Thresholds, cosine: np.ndarray,
                   rel: np.ndarray, status: list[str]) -> None:
    """The pairs the kernel does not take (or every pair without it): all at once in float64."""
    sizes = np.fromiter((a.size for a in rs), np.int64, len(rs))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    r64 = np.concatenate(rs, dtype=np.float64, casting="unsafe")
    t64 = np.concatenate(ts, dtype=np.float64, casting="unsafe")
    d64 = t64 - r64
    with np.errstate(all="ignore"):
        rr = np.add.reduceat(r64 * r64, starts)
        tt = np.add.reduceat(t64 * t64, starts)
        rt = np.add.reduceat(r64 * t64, starts)
        dd = np.add.reduceat(d64 * d64, starts)
        rn, tn = np.sqrt(rr), np.sqrt(tt)
        direct = rt / (rn * tn)
        close = 1.0 - (dd - (tn - rn) ** 2) / (2.0 * rn * tn)  # accurate when t is close to r
        cos = np.minimum(np.where(dd < 1e-4 * rr, close, direct), 1.0)
        rl2 = np.sqrt(dd) / rn
    good = np.isfinite(rr) & np.isfinite(tt) & np.isfinite(rt) & np.isfinite(dd) & (rr > 0) & (tt > 0)
    for k, i in enumerate(idx):
        if good[k]:
            c, e = float(cos[k]), float(rl2[k])
            cosine[i], rel[i] = c, e
            status[i] = "ok" if (c >= th.cosine and e <= th.rel_l2) else "diverged"
        else:  # NaN/Inf or an all-zero side: the report's own metrics and rule
            cosine[i], rel[i], status[i] = _exact(rs[k], ts[k], th)


def _exact(r: np.ndarray, t: np.ndarray, thresholds: Thresholds) -> tuple[float, float, str]:
    """The report's own metrics and status of one pair; a small pair (e.g. a scalar that is zero on
    both sides in every sample) is looked up by its exact contents, computed once."""
    from netdiff.metrics import compute_metrics
    from netdiff.verdict import status_of

    key = None
    if r.size <= _EXACT_MEMO_SIZE and t.size <= _EXACT_MEMO_SIZE:
        key = (r.dtype.str, r.shape, r.tobytes(), t.dtype.str, t.shape, t.tobytes(), thresholds)
        found = _EXACT_MEMO.get(key)
        if found is not None:
            return found
    m = compute_metrics(r, t)
    out = m.cosine, m.rel_l2, status_of(thresholds, m)
    if key is not None:
        if len(_EXACT_MEMO) >= 4096:
            _EXACT_MEMO.clear()
        _EXACT_MEMO[key] = out
    return out


_EXACT_MEMO_SIZE = 64  # elements: pairs at most this small are memoized by content
_EXACT_MEMO: dict[tuple, tuple[float, float, str]] = {}


def first_divergence(plan: Plan, status: Sequence[str]) -> int | None:
    """Index of the first layer that diverged while its compared ancestors are ok or noisy, or None."""
    for i, s in enumerate(status):
        if s == "diverged" and all(status[j] in ("ok", "noisy") for j in plan.ancestors[i]):
            return i
    return None


def sample_boxes(plan: Plan, ref: Mapping[str, np.ndarray], tgt: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per detector head: boxes kept / matched / lost / extra on one sample (netdiff.boxes)."""
    from netdiff.detection import DEFAULT_IOU_THRESHOLD, _compare_head

    names = {n for h in plan.heads for n in (h.scores, h.boxes) if n}
    reference = _as_dump({n: ref[n] for n in names if n in ref})
    target = _as_dump({x.target_name: tgt[x.target_name] for x in plan.head_layers.values()
                       if x.target_name in tgt})
    out = {}
    for head in plan.heads:
        try:
            agreement, _, _ = _compare_head(head, plan.head_layers, reference, target, plan.score_threshold,
                                            DEFAULT_IOU_THRESHOLD)
        except (KeyError, ValueError, IndexError):
            agreement = None
        out[head.scores] = None if agreement is None else (agreement.reference_kept, agreement.target_kept,
                                                           agreement.matched, agreement.max_score_delta)
    return out


def output_cosine(plan: Plan, cosine: np.ndarray) -> float:
    """The lowest cosine over the graph outputs (over every layer when no output was compared)."""
    values = cosine[plan.outputs] if plan.outputs else cosine
    nan = np.isnan(values)
    if values.size == 0 or nan.all():
        return math.nan
    return -math.inf if nan.any() else float(values.min())


def converted_sources(reference: Any, target: Any, feeds: Mapping[str, np.ndarray], names: Sequence[str]
                      ) -> dict[str, tuple] | None:
    """For a target model a converter wrote (QDQ, QOperator), where each of ``names`` lives in the
    target's raw outputs, worked out once on ``feeds`` with :func:`netdiff.converted.adapt_target`
    (the placement the full comparison uses). None when the names are the raw ones (float, fp16).

    Raises:
        NetdiffError: A planned tensor has no single raw source (e.g. NCHWc-blocked data).
    """
    from netdiff.converted import adapt_target, graph_kind

    if not (hasattr(reference, "onnx_model") and hasattr(target, "onnx_model")):
        return None
    ref_model, tgt_model = reference.onnx_model(), target.onnx_model()
    if graph_kind(tgt_model) == "float":
        return None
    ref_dump, raw = reference.run(dict(feeds)), target.run(dict(feeds))
    adapted = adapt_target(ref_model, tgt_model, ref_dump, raw)
    sources: dict[str, tuple] = {}
    for name in names:
        t = adapted.tensors.get(name)
        meta = dict(t.meta) if t is not None and t.meta else {}
        if meta.get("simulated_tensor"):
            sources[name] = ("copy", str(meta["simulated_tensor"]))
        elif meta.get("dequantized_from"):
            sources[name] = ("dequantize", str(meta["dequantized_from"]), float(meta["scale"]), int(meta["zero_point"]))
        elif t is not None and name in raw and not meta.get("nchwc_tensor"):
            sources[name] = ("copy", name)
        elif t is not None:
            raise NetdiffError(f"{name}: the target holds it in a form that cannot be streamed over samples "
                               f"({', '.join(sorted(meta)) or 'derived'}); compare samples one by one")
    return sources


def from_sources(sources: Mapping[str, tuple], raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The planned target tensors of one sample from the raw outputs (see :func:`converted_sources`)."""
    out: dict[str, np.ndarray] = {}
    for name, how in sources.items():
        value = raw.get(how[1])
        if value is None:
            continue
        value = np.asarray(value)
        if how[0] == "dequantize":
            value = (value.astype(np.float32) - np.float32(how[3])) * np.float32(how[2])
        elif value.dtype.kind == "f" and value.dtype != np.float32:
            value = value.astype(np.float32)
        out[name] = value
    return out
