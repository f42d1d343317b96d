"""Lint data types and the rule registry: which layers a target toolchain cannot convert, or converts differently.

A lint rule is a small function registered per target with :func:`register_lint_rule`; it looks at a
:class:`LintModel` (layers in Caffe terms, whether the model came from a prototxt or from ONNX) and
yields :class:`~netdiff.types.Finding` objects built with :meth:`LintRule.finding`, which stamps
each finding's evidence with the rule, its documented source and whether it is a heuristic.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netdiff.errors import NetdiffError
from netdiff.types import Finding

#: Finding kinds lint produces (the same kinds ``netdiff compare`` shows).
KINDS = ("unsupported_layer", "semantic_mismatch")
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class LintLayer:
    """One layer as the target converter would see it, in Caffe terms.

    Attributes:
        name: Caffe layer name, or the ONNX node name (``<op>_<index>`` when unnamed).
        type: Caffe layer type; for ONNX the Caffe type the node would become, or None when
            there is no Caffe equivalent.
        source_type: Type in the model file (Caffe type or ONNX op type).
        bottoms: Input blob/tensor names.
        tops: Output blob/tensor names.
        params: Normalized parameters (keys per type: ``order`` for Permute, ``axis``/``tiles`` for
            Tile, ``kernel``/``stride``/``pad``/``ceil``/``global`` for Pooling, ...).
        in_shapes: Shape of each bottom (None when unknown; None dims are dynamic).
        out_shapes: Shape of each top.
        index: Position in the model (0-based).
    """

    name: str
    type: str | None
    source_type: str
    bottoms: tuple[str, ...] = ()
    tops: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    in_shapes: tuple[Shape | None, ...] = ()
    out_shapes: tuple[Shape | None, ...] = ()
    index: int = 0

    @property
    def in_shape(self) -> Shape | None:
        """Shape of the first bottom, when known."""
        return self.in_shapes[0] if self.in_shapes else None

    @property
    def out_shape(self) -> Shape | None:
        """Shape of the first top, when known."""
        return self.out_shapes[0] if self.out_shapes else None


@dataclass
class LintModel:
    """A model prepared for linting.

    Attributes:
        path: Model file (or a description for in-memory models).
        format: "caffe" or "onnx".
        layers: Layers in execution order.
        inputs: Graph input name -> shape (None dims are dynamic).
        outputs: Graph output names (Caffe: blobs no later layer consumes).
        input_dtypes: Graph input name -> numpy dtype name.
        text: The prototxt text (Caffe), for rewrites quoting it.
        onnx: The ONNX ModelProto (ONNX, or a Caffe net translated with its weights), or None.
        notes: Why some checks could not run (e.g. no weights).
    """

    path: str
    format: str
    layers: list[LintLayer]
    inputs: dict[str, Shape] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    input_dtypes: dict[str, str] = field(default_factory=dict)
    text: str = ""
    onnx: Any = None
    notes: list[str] = field(default_factory=list)

    def consumers(self) -> dict[str, list[LintLayer]]:
        """Blob name -> layers reading it."""
        out: dict[str, list[LintLayer]] = {}
        for layer in self.layers:
            for b in layer.bottoms:
                out.setdefault(b, []).append(layer)
        return out


@dataclass(frozen=True)
class LintOptions:
    """Options some rules use.

    Attributes:
        inputs: Model inputs for rules that run the model (None: those rules are skipped).
        weights: Caffe weights path, when given.
        seed: Seed for random inputs (only used when ``inputs`` is "random").
    """

    inputs: Any = None
    weights: str | None = None
    seed: int = 0


Check = Callable[["LintRule", LintModel, LintOptions], Iterable[Finding]]


@dataclass(frozen=True)
class LintRule:
    """A registered rule: metadata plus its check function.

    Attributes:
        target: Target key ("nnie", "ascend").
        name: Kebab-case rule name, unique per target.
        kind: Finding kind, one of :data:`KINDS`.
        severity: Default severity of its findings.
        source: Where the constraint is documented (research note section and source keys).
        heuristic: True when the check estimates rather than applies a documented rule.
        summary: One line for docs and ``--help``.
        check: The function.
    """

    target: str
    name: str
    kind: str
    severity: str
    source: str
    heuristic: bool
    summary: str
    check: Check = field(repr=False, compare=False)

    def finding(self, layer: str | None, message: str, suggestion: str = "", *, severity: str | None = None,
                heuristic: bool | None = None, **evidence: Any) -> Finding:
        """Build a finding of this rule; evidence gets ``rule``, ``target``, ``source``, ``heuristic``."""
        stamp = {"rule": self.name, "target": self.target, "source": self.source,
                 "heuristic": self.heuristic if heuristic is None else heuristic}
        return Finding(self.kind, layer, severity or self.severity, message, {**stamp, **evidence}, suggestion)


_RULES: dict[str, dict[str, LintRule]] = {}


def register_lint_rule(target: str, name: str, *, kind: str, severity: str, source: str, heuristic: bool = False,
                       summary: str = "") -> Callable[[Check], Check]:
    """Decorator: register ``check`` as rule ``name`` of ``target``."""
    if kind not in KINDS:
        raise ValueError(f"lint rule {target}/{name}: kind {kind!r} is not one of {KINDS}")

    def decorate(check: Check) -> Check:
        rules = _RULES.setdefault(target, {})
        if name in rules:
            raise ValueError(f"lint rule {target}/{name} is already registered")
        doc = summary or (check.__doc__ or "").strip().splitlines()[0]
        rules[name] = LintRule(target, name, kind, severity, source, heuristic, doc, check)
        return check

    return decorate


def lint_targets() -> list[str]:
    """Registered target keys, sorted."""
    _load_rules()
    return sorted(_RULES)


def lint_rules(target: str | None = None) -> list[LintRule]:
    """Registered rules (of one target), in registration order."""
    _load_rules()
    if target is None:
        return [r for t in sorted(_RULES) for r in _RULES[t].values()]
    if target not in _RULES:
        raise NetdiffError(f"unknown lint target {target!r}; known: {', '.join(sorted(_RULES))}")
    return list(_RULES[target].values())


def _load_rules() -> None:
    from netdiff.lint import ascend, nnie  # noqa: F401  (registration)


#: Reader/runner keys of targets, mapped to the lint target that checks them.
_FORMAT_TARGETS = (("simulated-nnie", "nnie"), ("nnie-", "nnie"), ("ascend", "ascend"), ("msit", "ascend"))


def target_for_format(fmt: str) -> str | None:
    """The lint target for a target reader/runner key ("nnie-sim" -> "nnie"), or None."""
    for prefix, target in _FORMAT_TARGETS:
        if fmt == prefix or fmt.startswith(prefix):
            return target
    return None


@dataclass
class LintResult:
    """What lint found for one model and target.

    Attributes:
        target: Target key.
        model: Model path.
        format: "caffe" or "onnx".
        layers: Number of layers checked.
        findings: Findings, errors first, then in layer order.
        notes: Checks that could not run, and why.
    """

    target: str
    model: str
    format: str
    layers: int
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        """True when no error- or warning-level rule fired."""
        return not self.failed

    @property
    def failed(self) -> bool:
        """True when an error- or warning-level rule fired."""
        return any(f.severity in ("error", "warning") for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """``{"target", "model", "format", "layers", "findings": [...], "notes"}``."""
        return {"target": self.target, "model": self.model, "format": self.format, "layers": self.layers,
                "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}


_RANK = {"error": 0, "warning": 1, "info": 2}


def run_rules(model: LintModel, target: str, options: LintOptions | None = None) -> LintResult:
    """Run every rule of ``target`` on a prepared model.

    Raises:
        NetdiffError: ``target`` is unknown.
    """
    options = options or LintOptions()
    rules = lint_rules(target)
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(rule.check(rule, model, options))
    order = {layer.name: layer.index for layer in model.layers}
    findings.sort(key=lambda f: (_RANK.get(f.severity, 3), order.get(f.layer or "", -1)))
    return LintResult(target, model.path, model.format, len(model.layers), findings, list(model.notes))


def wrap(text: str, width: int = 100) -> str:
    """Wrap a long list for messages."""
    return textwrap.shorten(text, width, placeholder=" ...")
