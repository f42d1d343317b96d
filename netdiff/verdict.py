"""Per-layer status (ok / noisy / diverged), origins of divergence and error gain."""

from __future__ import annotations

import math
from collections.abc import Iterable

from netdiff.types import LayerMetrics, LayerResult, Thresholds

#: Statuses of a layer that reproduces the reference as well as the target's precision allows.
ACCEPTED = ("ok", "noisy")
#: A layer is never ``noisy`` above this rel_l2, whatever noise its precision predicts.
MAX_NOISY_REL_L2 = 0.5


def find_origins(layers: list[LayerResult]) -> list[str]:
    """Mark layers that introduced divergence and set each layer's error gain.

    A diverged layer is an origin when every aligned input of it is ok or noisy. Inputs that were not
    compared are looked through: their own nearest compared ancestors stand in for them. An input whose
    shapes differ (``shape_mismatch``) is not looked through: what follows it did not start the divergence.

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
        if layer.status == "diverged" and all(u.status in ACCEPTED for u in upstream):
            layer.introduced = True
            origins.append(layer.name)
    return origins


def behind_shape_mismatch(layers: list[LayerResult]) -> set[str]:
    """Names of the layers computed from a ``shape_mismatch`` tensor (directly or through others): the
    two sides ran on differently shaped data there, so their element-wise differences name no cause."""
    by_name = {layer.name: layer for layer in layers}
    memo: dict[str, bool] = {}

    def tainted(name: str, visiting: frozenset[str]) -> bool:
        if name not in memo:
            layer = by_name[name]
            memo[name] = any(i in by_name and i not in visiting
                             and (by_name[i].status == "shape_mismatch" or tainted(i, visiting | {name}))
                             for i in layer.inputs)
        return memo[name]

    return {layer.name for layer in layers if tainted(layer.name, frozenset())}


def compared_ancestors(inputs: Iterable[str], by_name: dict[str, LayerResult]) -> list[LayerResult]:
    """The nearest compared tensors among ``inputs`` and, through the ones not compared, their ancestors."""
    return _compared_ancestors(inputs, by_name, {}, set())


def _compared_ancestors(inputs: Iterable[str], by_name: dict[str, LayerResult],
                        memo: dict[str, list[LayerResult]], visiting: set[str]) -> list[LayerResult]:
    found: list[LayerResult] = []
    for name in inputs:
        layer = by_name.get(name)
        if layer is None or name in visiting:
            continue
        if layer.metrics is not None or layer.status == "shape_mismatch":
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


def status_of(thresholds: Thresholds, metrics: LayerMetrics, expected_rel_l2: float | None = None) -> str:
    """'ok', 'noisy' or 'diverged' for a metrics record under ``thresholds``.

    'noisy': outside the thresholds, but rel_l2 is at most ``thresholds.noise_factor`` times the
    precision's ``expected_rel_l2`` (and at most :data:`MAX_NOISY_REL_L2`). Without an expected
    noise, only 'ok' or 'diverged'.
    """
    if metrics.count == 0:
        return "ok"  # an empty tensor (a PyTorch export's empty Resize roi/scales Constant) holds nothing to differ
    if metrics.target_nan + metrics.target_inf > metrics.ref_nan + metrics.ref_inf:
        return "diverged"  # NaN/Inf the reference does not have: never ok, whatever the finite pairs say
    if thresholds.passes(metrics):
        return "ok"
    return "noisy" if within_noise(thresholds, metrics, expected_rel_l2) else "diverged"


def within_noise(thresholds: Thresholds, metrics: LayerMetrics, expected_rel_l2: float | None) -> bool:
    """True when the layer's rel_l2 is what its precision is expected to cost (see :mod:`netdiff.noise`)."""
    rel = metrics.rel_l2
    if expected_rel_l2 is None or math.isnan(rel) or math.isnan(metrics.cosine):
        return False
    return rel <= min(thresholds.noise_factor * expected_rel_l2, MAX_NOISY_REL_L2)


def apply_expected_noise(layers: list[LayerResult], thresholds: Thresholds) -> list[str]:
    """Re-judge compared layers against their ``expected_rel_l2``; return the names now ``noisy``."""
    noisy = []
    for layer in layers:
        if layer.metrics is None or layer.status not in ("ok", "noisy", "diverged"):
            continue
        layer.status = status_of(thresholds, layer.metrics, layer.expected_rel_l2)
        if layer.status == "noisy":
            noisy.append(layer.name)
    return noisy


def nothing_compared_reason(report, examples: int = 3) -> str:
    """Why a report compared nothing, in one line: how many names on each side, a few of each, and --map."""
    reference = [x.name for x in report.layers if x.status == "missing_in_target"]
    target = [x.name for x in report.layers if x.status == "missing_in_reference"]
    target += [n for n in report.meta.get("target_only") or [] if n not in set(target)]
    if not reference and not target:
        what = f"{len(report.layers)} tensor(s), none comparable" if report.layers else "both sides are empty"
        return f"nothing compared: {what}"
    return (f"nothing compared: no target tensor matched a reference tensor (reference, {len(reference)}: "
            f"{_few(reference, examples)}; target, {len(target)}: {_few(target, examples)}); pair them with "
            f"--map FILE.json ({{\"target_name\": \"reference_name\"}}; mapping= in Python)")


def _few(names: list[str], n: int) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
