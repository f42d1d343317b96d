"""The diagnosis rule registry: each rule looks at the comparison and may name a cause."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdiff.align import Alignment
from netdiff.types import Dump, Finding, LayerResult, Report

log = logging.getLogger(__name__)

_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Context:
    """What a rule may look at.

    Attributes:
        report: The report so far (layers, origins; findings not yet filled).
        reference: The reference dump.
        target: The target dump.
        alignment: How tensors were paired.
        model: The reference ONNX ModelProto when the reference is a model, else None.
        target_format: Key of the target's reader or runner ("ascend", "nnie-sim", ...).
        options: Diagnosis options (e.g. "isolated": "origins" | "all" | "none").
        explained: Layers a rule already named a specific cause for; later, more generic rules
            (channel mismatch, introduced error) skip them.
        findings: The findings of the rules that ran before (the last rules look at them).
    """

    report: Report
    reference: Dump
    target: Dump
    alignment: Alignment
    model: Any = None
    target_format: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    explained: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)
    _pairs: dict[str, tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict, repr=False)
    _behind: set[str] | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def behind_shape_mismatch(self) -> set[str]:
        """Layers computed from a shape-mismatched tensor (:func:`netdiff.verdict.behind_shape_mismatch`), once."""
        if self._behind is None:
            from netdiff.verdict import behind_shape_mismatch

            self._behind = behind_shape_mismatch(self.report.layers)
        return self._behind

    def claim(self, layer: str | None) -> None:
        """Record that ``layer`` has a specific cause."""
        if layer is not None:
            self.explained.add(layer)

    def cached_pair(self, layer: LayerResult) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`pair`, loaded once per layer for all rules."""
        if layer.name not in self._pairs:
            try:
                self._pairs[layer.name] = self.pair(layer)
            except Exception:  # unreadable data: the layer already carries status "error"
                self._pairs[layer.name] = None
        return self._pairs[layer.name]

    def pair(self, layer: LayerResult) -> tuple[np.ndarray, np.ndarray] | None:
        """Reference and aligned target arrays of a compared layer (float64), or None."""
        if layer.target_name is None or layer.match is None or layer.match.transform is None:
            return None
        ref = self.reference[layer.name].load()
        try:
            tgt = layer.match.transform.apply(self.target[layer.target_name].load(), tuple(ref.shape))
        except (ValueError, KeyError):
            return None
        return np.asarray(ref, dtype=np.float64), np.asarray(tgt, dtype=np.float64)


Rule = Callable[[Context], Iterable[Finding]]
_RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Decorator: register a diagnosis rule under a kebab-case ``name``."""

    def decorate(rule: Rule) -> Rule:
        if name in _RULES:
            raise ValueError(f"rule {name!r} is already registered")
        _RULES[name] = rule
        return rule

    return decorate


def rule_names() -> list[str]:
    """Registered rule keys, sorted."""
    return sorted(_RULES)


def diagnose(context: Context) -> list[Finding]:
    """Run every rule and return the findings: most severe first, then those about introduction points
    (origins and layers wrong by themselves after them), then in layer order.

    A rule that fails is logged and skipped: diagnosis never breaks a report.
    """
    findings = context.findings
    for name, rule in _RULES.items():
        try:
            findings.extend(rule(context))
        except Exception:  # a buggy rule must not cost the user the report
            log.exception("diagnosis rule %s failed", name)
    order = {layer.name: i for i, layer in enumerate(context.report.layers)}
    from netdiff.diagnosis._common import introduction_points

    origins = set(introduction_points(context))
    return sorted(list(findings), key=lambda f: (_SEVERITY_RANK.get(f.severity, 3), f.layer not in origins,
                                           order.get(f.layer or "", -1)))
