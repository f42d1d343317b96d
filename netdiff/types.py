"""Plain data types where the pipeline's layers meet.

read/run -> :class:`Dump` of :class:`Tensor` -> align -> :class:`Match` ->
measure -> :class:`LayerMetrics` -> verdict -> :class:`LayerResult` ->
diagnose -> :class:`Finding` -> :class:`Report`.

Reports, the CLI and the pytest plugin only ever see these types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from netdiff._lazy import lazy_import

np = lazy_import("numpy")  # imported on first use, so `netdiff --help` never loads it


#: Layer status values, in the order the terminal legend shows them.
STATUSES = ("ok", "noisy", "diverged", "missing_in_target", "missing_in_reference", "shape_mismatch", "error", "not_observable")
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Tensor:
    """One named tensor of a dump, with its data loaded lazily.

    Attributes:
        name: Tensor name as the producing framework or device named it.
        shape: Logical shape (after any device-format conversion the reader applies).
        dtype: numpy dtype name of the data ``load()`` returns.
        loader: Zero-argument callable returning the array (memory-mapped when possible).
        layout: Storage layout tag ("NCHW", "NHWC", ...) or None when unknown.
        op_type: Type of the op that produced the tensor, when known.
        order: Topological index of the producing op, when known.
        inputs: Names of the tensors the producing op consumed, when known.
        origin_names: Names in the *original* framework graph this tensor stands for
            (fusion maps, in-place chains); the last one is the value it holds.
        source: Where the data came from (file path or description).
        meta: Reader-specific extras (kept small and JSON-friendly).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    loader: Callable[[], np.ndarray] = field(repr=False, compare=False)
    layout: str | None = None
    op_type: str | None = None
    order: int | None = None
    inputs: tuple[str, ...] = ()
    origin_names: tuple[str, ...] = ()
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def load(self) -> np.ndarray:
        """Return the tensor data (may be a read-only memory map)."""
        return self.loader()

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def error(self) -> str | None:
        """Why the tensor cannot be read (set by readers for a corrupt file), else None."""
        value = self.meta.get("error") if self.meta else None
        return str(value) if value else None

    @classmethod
    def unreadable(cls, name: str, reason: str, source: str = "") -> Tensor:
        """A placeholder for a tensor whose file is corrupt: listed, compared as status 'error'."""
        from netdiff.errors import DumpFormatError

        def fail() -> np.ndarray:
            raise DumpFormatError(reason)

        return cls(name=name, shape=(), dtype="unknown", loader=fail, source=source, meta={"error": reason})

    @classmethod
    def from_array(cls, name: str, array: np.ndarray, **info: Any) -> Tensor:
        """Wrap an in-memory array."""
        return cls(name=name, shape=tuple(int(d) for d in array.shape), dtype=array.dtype.name,
                   loader=lambda: array, **info)


@dataclass
class Dump:
    """An ordered set of named tensors from one side of a comparison.

    Attributes:
        tensors: Tensors by name, in topological order when the source knows it.
        source: Path or description of what was read or run.
        format: Registry key of the reader or runner that produced it.
        graph_inputs: Names of the model inputs among ``tensors``.
        graph_outputs: Names of the model outputs among ``tensors``.
        meta: Format-specific facts worth showing (precision mode, mapper cfg, ...).
        target_only: Names of device-internal tensors with no framework equivalent
            (TransData, Cast, toolkit helpers) that are listed but never compared.
    """

    tensors: dict[str, Tensor]
    source: str = ""
    format: str = ""
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    target_only: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """Format, source, tensor count and the first names (not every tensor's fields)."""
        names = list(self.tensors)
        shown = ", ".join(n if len(n) <= 60 else n[:29] + "…" + n[-30:] for n in names[:5])
        more = f", … {len(names) - 5} more" if len(names) > 5 else ""
        return f"<Dump {self.format or '?'} {str(self.source)[-120:]!r}: {len(names)} tensors ({shown}{more})>"

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors.values())

    def __len__(self) -> int:
        return len(self.tensors)

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    @property
    def names(self) -> list[str]:
        """Tensor names in dump order."""
        return list(self.tensors)

    def producers(self) -> dict[str, list[str]]:
        """Map each tensor name to the tensor names its op consumed (known edges only)."""
        return {t.name: list(t.inputs) for t in self}


@dataclass(frozen=True)
class Transform:
    """How a target tensor was reshaped to the reference's shape before comparing.

    Attributes:
        permutation: Axis order applied to the target (``np.transpose`` axes) or None.
        reshape: True when the target was reshaped (squeeze/flatten, same element count).
        crop: Per-axis stop indices applied to strip padding, or None.
        squeeze: True when dims of size 1 are dropped before the permutation.
        description: Short human form, e.g. "NHWC->NCHW".
    """

    permutation: tuple[int, ...] | None = None
    reshape: bool = False
    crop: tuple[int, ...] | None = None
    squeeze: bool = False
    description: str = "none"

    def apply(self, target: np.ndarray, reference_shape: tuple[int, ...]) -> np.ndarray:
        """Return ``target`` transformed into ``reference_shape``."""
        out = target
        if self.crop is not None:
            out = out[tuple(slice(0, s) for s in self.crop)]
        if self.squeeze:
            out = out.reshape(tuple(d for d in out.shape if d != 1))
        if self.permutation is not None:
            out = np.transpose(out, self.permutation)
        if self.reshape or out.shape != tuple(reference_shape):
            out = out.reshape(reference_shape)
        return out


IDENTITY = Transform()


@dataclass(frozen=True)
class Match:
    """A pairing of one reference tensor with one target tensor (either may be absent).

    Attributes:
        reference: Reference tensor name, or None when only the target has it.
        target: Target tensor name, or None when only the reference has it.
        method: How they were paired: "exact", "normalized", "map", "fusion-map", "blob",
            "original-op", "truncated", "content" (re-aligned by a content check) or "unmatched".
        transform: Layout transform applied to the target.
        reason: One sentence on why (or why not) they were paired.
        alternatives: Other transforms that fit the shapes equally well; the comparison
            picks the one with the best cosine and records it.
    """

    reference: str | None
    target: str | None
    method: str
    transform: Transform = IDENTITY
    reason: str = ""
    alternatives: tuple[Transform, ...] = ()


#: Metric names in report order (keys of ``LayerMetrics.as_dict()``).
METRIC_NAMES = (
    "cosine", "max_abs", "mean_abs", "rmse", "rel_l2", "sqnr_db", "max_rel", "mean_rel", "kl",
    "ref_min", "ref_max", "ref_mean", "ref_std", "target_min", "target_max", "target_mean", "target_std",
    "ref_nan", "ref_inf", "target_nan", "target_inf", "count", "finite_count",
)


@dataclass(frozen=True)
class LayerMetrics:
    """Divergence metrics of one aligned pair (formulas in docs/metrics.md).

    Float fields are NaN when undefined for the pair; ``notes`` says why.
    """

    cosine: float
    max_abs: float
    mean_abs: float
    rmse: float
    rel_l2: float
    sqnr_db: float
    max_rel: float
    mean_rel: float
    kl: float
    ref_min: float
    ref_max: float
    ref_mean: float
    ref_std: float
    target_min: float
    target_max: float
    target_mean: float
    target_std: float
    ref_nan: int
    ref_inf: int
    target_nan: int
    target_inf: int
    count: int
    finite_count: int
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, float | int | None]:
        """Metrics as a JSON-friendly dict (NaN and Inf become None / large floats)."""
        return {k: _json_number(getattr(self, k)) for k in METRIC_NAMES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerMetrics:
        """Inverse of :meth:`as_dict` (None becomes NaN)."""
        values = {}
        for f in fields(cls):
            if f.name == "notes":
                values["notes"] = tuple(data.get("notes", ()))
            else:
                v = data.get(f.name)
                values[f.name] = float("nan") if v is None else v
        return cls(**values)


def _json_number(value: float | int) -> float | int | None:
    if type(value) is float:
        if math.isfinite(value):
            return value
    elif isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return 1e308 if value > 0 else -1e308
    return value


@dataclass(frozen=True)
class Thresholds:
    """When a layer counts as diverged: cosine below ``cosine`` or rel_l2 above ``rel_l2``.

    When the target's precision is known, a layer outside these thresholds whose rel_l2 is at most
    ``noise_factor`` times its expected noise (:attr:`LayerResult.expected_rel_l2`) is ``noisy``,
    not diverged (docs/converted-models.md).
    """

    cosine: float = 0.99
    rel_l2: float = 0.05
    noise_factor: float = 4.0

    def passes(self, metrics: LayerMetrics) -> bool:
        """True when the pair is within both thresholds (NaN cosine fails unless both sides are zero)."""
        cos, rel = metrics.cosine, metrics.rel_l2
        if math.isnan(cos) or cos < self.cosine:
            return False
        return not (math.isnan(rel) or rel > self.rel_l2)


@dataclass
class LayerResult:
    """The verdict for one reference tensor (or one unmatched target tensor).

    Attributes:
        name: Reference tensor name (target name when missing in the reference).
        target_name: Aligned target tensor name, or None.
        op_type: Producing op type, when known.
        order: Topological index in the reference, when known.
        status: One of :data:`STATUSES`.
        metrics: Metrics of the aligned pair, or None when not compared.
        match: How the pair was aligned.
        introduced: True when this layer diverged while all its aligned inputs are ok (or noisy).
        error_gain: rel_l2 of this layer divided by the largest rel_l2 of its inputs.
        shape: Reference shape (target shape when missing in the reference).
        target_shape: Target shape as stored.
        reason: Why the status is what it is (errors, shape mismatches, NaN cosine).
        inputs: Reference input tensor names.
        expected_rel_l2: The rel_l2 the target's precision is expected to cost at this layer
            (quantization / rounding noise accumulated through the net), or None when the
            precision is unknown (see :mod:`netdiff.noise`).
        extra: Additional per-layer data filled by later stages
            ("isolated" metrics, "histograms", "channels", per-sample stats, ...).
    """

    name: str
    target_name: str | None
    op_type: str | None
    order: int | None
    status: str
    metrics: LayerMetrics | None = None
    match: Match | None = None
    introduced: bool = False
    error_gain: float | None = None
    shape: tuple[int, ...] | None = None
    target_shape: tuple[int, ...] | None = None
    reason: str = ""
    inputs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: name, op, status and the headline metrics (``extra`` holds kilobytes of detail)."""
        from netdiff.reports.notebook import layer_repr

        return layer_repr(self)
    expected_rel_l2: float | None = None


@dataclass(frozen=True)
class Precision:
    """What the target computes in, as far as netdiff knows it.

    Attributes:
        kind: "int8", "uint8", "int16", "int4", "fp16", "bf16", "nnie8", "nnie16" or "fp32".
        source: Where it was learnt: "hint" (--precision), "model" (a quantized or fp16 target
            model) or "simulator" (netdiff run).
        activation_bits: Bits of quantized activations (uniform kinds), else None.
        weight_bits: Bits of quantized weights (uniform kinds), else None.
        per_channel: Weights quantized per output channel (uniform kinds).
        weight_steps: Reference node name -> the target's weight quantization step(s), when the
            target model holds them (QDQ / QOperator scales).
        activation_steps: Reference tensor name -> the target's quantization step of it.
    """

    kind: str
    source: str = "hint"
    activation_bits: int | None = None
    weight_bits: int | None = None
    per_channel: bool = False
    weight_steps: Mapping[str, tuple[float, ...]] = field(default_factory=dict, compare=False)
    activation_steps: Mapping[str, float] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (the report's ``meta["precision"]``)."""
        data: dict[str, Any] = {"kind": self.kind, "source": self.source}
        if self.activation_bits is not None:
            data.update(activation_bits=self.activation_bits, weight_bits=self.weight_bits,
                        per_channel=self.per_channel)
        if self.weight_steps or self.activation_steps:
            data.update(quantized_weights=len(self.weight_steps), quantized_tensors=len(self.activation_steps))
        return data


@dataclass(frozen=True)
class Finding:
    """A diagnosed cause, with the numbers behind it and what to change.

    Attributes:
        kind: Registry key of the rule (e.g. "input_channel_order").
        layer: Reference tensor name the finding is about, or None for the whole model.
        severity: "error", "warning" or "info".
        message: One sentence a user understands.
        evidence: Numbers that support the finding.
        suggestion: What to change, in the target toolchain's terms when known.
    """

    kind: str
    layer: str | None
    severity: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    suggestion: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        data = asdict(self)
        data["evidence"] = _jsonable(dict(self.evidence))
        return data


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # the common leaves first
        return value
    if kind is float:
        return _json_number(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return _json_number(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@dataclass
class Report:
    """Everything one comparison found; renderers turn it into text, JSON, CSV or HTML.

    Attributes:
        reference: Description of the reference (path and format).
        target: Description of the target (path and format).
        thresholds: Divergence thresholds used.
        layers: Layer results in reference topological order, unmatched targets last.
        first_divergence: Reference name of the first origin in topological order, or None.
        origins: Reference names of every layer that introduced divergence.
        findings: Diagnosed causes, most important first.
        inputs: Description of the inputs used (name -> file or "random(seed=...)").
        meta: Extra header facts (precision mode, mapper cfg, sample count, ...).
    """

    reference: dict[str, Any]
    target: dict[str, Any]
    thresholds: Thresholds
    layers: list[LayerResult]
    first_divergence: str | None = None
    origins: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """True when no layer diverged, failed to read or could not be reconciled, and something was compared."""
        return not self.failed

    @property
    def noisy(self) -> bool:
        """True when some layers are outside the thresholds but within the precision's expected noise."""
        return any(layer.status == "noisy" for layer in self.layers)

    @property
    def diverged(self) -> bool:
        """True when any layer diverged."""
        return any(layer.status == "diverged" for layer in self.layers)

    @property
    def failed(self) -> bool:
        """True when any layer diverged, is unreadable (error) or has an irreconcilable shape, or when
        nothing was compared at all (a comparison that checked nothing must not pass)."""
        return self.layers_failed or self.nothing_compared

    @property
    def layers_failed(self) -> bool:
        """True when any layer diverged, is unreadable (error) or has an irreconcilable shape."""
        return any(layer.status in ("diverged", "error", "shape_mismatch") for layer in self.layers)

    @property
    def nothing_compared(self) -> bool:
        """True when not a single tensor pair was aligned and measured."""
        return not any(layer.metrics is not None for layer in self.layers)

    @property
    def verdict(self) -> str:
        """The headline: ``diverged``, ``incomplete``, ``nothing_compared`` or ``ok`` (first that applies)."""
        if self.diverged:
            return "diverged"
        if self.layers_failed:
            return "incomplete"
        return "nothing_compared" if self.nothing_compared else "ok"

    def verdict_reason(self) -> str | None:
        """One line saying why the verdict is not a comparison result (``nothing_compared``), else None."""
        if self.verdict != "nothing_compared":
            return None
        from netdiff.verdict import nothing_compared_reason

        return nothing_compared_reason(self)

    def layer(self, name: str) -> LayerResult:
        """Return the result for a reference (or target) tensor name."""
        for layer in self.layers:  # a reference name first: a converter may reuse it for another target tensor
            if layer.name == name:
                return layer
        for layer in self.layers:
            if layer.target_name == name:
                return layer
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        """Counts per status and the headline verdict."""
        counts = {s: 0 for s in STATUSES}
        for layer in self.layers:
            counts[layer.status] = counts.get(layer.status, 0) + 1
        compared = [x for x in self.layers if x.metrics is not None]
        worst = min(compared, key=lambda x: _nan_low(x.metrics.cosine), default=None)
        return {
            "verdict": self.verdict,
            "reason": self.verdict_reason(),
            "layers": len(self.layers),
            "compared": len(compared),
            "counts": counts,
            "worst_layer": worst.name if worst else None,
            "worst_cosine": _json_number(worst.metrics.cosine) if worst else None,
            "findings": len(self.findings),
        }

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON data as plain Python types (see docs/json-report.md)."""
        from netdiff.reports.json import report_to_json

        return report_to_json(self)

    def to_json(self) -> str:
        """The documented JSON report as text, as ``netdiff compare --json`` writes it.

        It used to return the dict that :meth:`to_dict` returns now; indexing the text like that
        dict (``report.to_json()["layers"]``) still works, with a DeprecationWarning.
        """
        from netdiff.reports.json import JsonText, dumps_report, report_to_json

        return JsonText(dumps_report(report_to_json(self)))

    def to_dataframe(self) -> Any:
        """A pandas DataFrame, one row per layer, metrics as columns (needs the optional pandas)."""
        from netdiff.reports.notebook import report_dataframe

        return report_dataframe(self)

    def __repr__(self) -> str:
        """Verdict, sides, counts, first divergence and top findings, in a few hundred characters."""
        from netdiff.reports.notebook import report_repr

        return report_repr(self)

    def _repr_html_(self) -> str:
        """The notebook view: summary, findings and the layer table (static, escaped HTML)."""
        from netdiff.reports.notebook import report_html

        return report_html(self)


def _nan_low(value: float) -> float:
    return -2.0 if math.isnan(value) else value
