"""Per-layer status, origins of divergence and error gain."""

from __future__ import annotations

import math
from collections.abc import Iterable

from netdiff.types import LayerMetrics, LayerResult, Thresholds


def find_origins(layers: list[LayerResult]) -> list[str]:
    """Mark layers that introduced divergence and set each layer's error gain.

    A diverged layer is an origin when every aligned input of it is ok. Inputs that were not
    compared are looked through: their own nearest compared ancestors stand in for them.

    Returns:
        Origin names in topological order.
    """
    by_name = {layer.name: layer for layer in layers}
    memo: dict[str, list[LayerResult]] = {}
    origins = []
    for layer in layers:
        if layer.metrics is None:
            continue
        upstream = _compared_ancestors(layer.inputs, by_name, memo, set())
        rels = [u.metrics.rel_l2 for u in upstream if u.metrics is not None]
        layer.error_gain = _gain(layer.metrics.rel_l2, rels)
        if layer.status == "diverged" and all(u.status == "ok" for u in upstream):
            layer.introduced = True
            origins.append(layer.name)
    return origins


def _compared_ancestors(inputs: Iterable[str], by_name: dict[str, LayerResult],
                        memo: dict[str, list[LayerResult]], visiting: set[str]) -> list[LayerResult]:
    found: list[LayerResult] = []
    for name in inputs:
        layer = by_name.get(name)
        if layer is None or name in visiting:
            continue
        if layer.metrics is not None:
            found.append(layer)
            continue
        if name not in memo:
            visiting.add(name)
            memo[name] = _compared_ancestors(layer.inputs, by_name, memo, visiting)
            visiting.discard(name)
        found.extend(memo[name])
    unique = {id(x): x for x in found}
    return list(unique.values())


def _gain(rel: float, input_rels: list[float]) -> float | None:
    finite = [r for r in input_rels if not math.isnan(r)]
    if not finite or math.isnan(rel):
        return None
    top = max(finite)
    if top == 0:
        return None if rel == 0 else math.inf
    return rel / top


def status_of(thresholds: Thresholds, metrics: LayerMetrics) -> str:
    """'ok' or 'diverged' for a metrics record under ``thresholds``."""
    if metrics.target_nan + metrics.target_inf > metrics.ref_nan + metrics.ref_inf:
        return "diverged"  # NaN/Inf the reference does not have: never ok, whatever the finite pairs say
    return "ok" if thresholds.passes(metrics) else "diverged"
