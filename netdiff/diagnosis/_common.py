"""Helpers shared by the rule families: which layers to look at, toolchain words, small fits."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

import numpy as np

from netdiff.diagnosis.base import Context
from netdiff.types import LayerResult

#: Named constants a scale factor is compared with, as (value, label).
_NAMED = [(255.0, "255"), (1 / 255.0, "1/255"), (256.0, "256"), (1 / 256.0, "1/256"), (128.0, "128"),
          (1 / 128.0, "1/128"), (127.5, "127.5"), (1 / 127.5, "1/127.5"), (4096.0, "4096 (Q12)"),
          (1 / 4096.0, "1/4096 (Q12)"), (-1.0, "-1")]


def toolchain(context: Context) -> str:
    """"nnie", "ascend", "onnxruntime" or "generic" from the target's reader/runner key."""
    fmt = (context.target_format or "").lower()
    if "nnie" in fmt:
        return "nnie"
    if fmt.startswith("ascend") or fmt == "msit":
        return "ascend"
    if fmt in ("onnx", "simulated-int8", "simulated-fp16") or fmt.startswith("onnx"):
        return "onnxruntime"
    return "generic"


def pick(context: Context, nnie: str = "", ascend: str = "", onnxruntime: str = "", generic: str = "") -> str:
    """The suggestion text for the target's toolchain (generic when none is given for it)."""
    chosen = {"nnie": nnie, "ascend": ascend, "onnxruntime": onnxruntime}.get(toolchain(context), "")
    return chosen or generic


def compared(layers: Iterable[LayerResult]) -> list[LayerResult]:
    """Layers that have metrics."""
    return [x for x in layers if x.metrics is not None]


def candidates(context: Context, diverged_only: bool = True) -> list[LayerResult]:
    """Introduction points (:func:`introduction_points`) and graph outputs (compared), in report order,
    inputs excluded, and none computed from a ``shape_mismatch`` tensor (element-wise evidence means
    nothing there).

    These are the only layers most rules inspect, which keeps diagnosis cheap on big models.
    """
    wanted = set(introduction_points(context)) | set(context.reference.graph_outputs)
    inputs = set(context.reference.graph_inputs)
    behind = context.behind_shape_mismatch()
    out = []
    for layer in context.report.layers:
        if layer.name not in wanted or layer.name in inputs or layer.metrics is None or layer.name in behind:
            continue
        if diverged_only and layer.status != "diverged":
            continue
        out.append(layer)
    return out


#: A variant of an op (resize convention, axis, flatten order) names the cause when it reproduces the
#: target at least this well ...
VARIANT_REPRODUCES = 0.9999
#: ... and leaves at most this share of the error (1 - cosine) the op as the model has it leaves.
VARIANT_EXPLAINS = 0.2


def variant_explains(variant_cosine: float, model_cosine: float) -> bool:
    """True when a variant of an op reproduces the target far better than the model's own op does."""
    return variant_cosine >= VARIANT_REPRODUCES and (1 - variant_cosine) <= VARIANT_EXPLAINS * (1 - model_cosine)


#: An isolated re-run with cosine above this and rel_l2 below :data:`NOISE_REL_L2` is within any
#: precision's noise (not an introduced error), whatever the thresholds.
NOISE_COSINE = 0.9999
#: ... (cosine 0.9999 with equal norms is rel_l2 ≈ 0.014: a larger rel_l2 is a scale, not noise).
NOISE_REL_L2 = 0.02


def isolated_noise(context: Context, layer: LayerResult, cosine: float, rel_l2: float | None) -> dict | None:
    """Why an isolated re-run of ``layer`` reaching ``cosine`` / ``rel_l2`` is within the target's
    precision noise, or None when it is not: cosine ≥ :data:`NOISE_COSINE` with rel_l2 ≤
    :data:`NOISE_REL_L2`, or rel_l2 within ``noise_factor`` × the layer's expected rel_l2 (the
    precision-aware verdict, :mod:`netdiff.noise`)."""
    if cosine is not None and cosine >= NOISE_COSINE and (rel_l2 is None or rel_l2 <= NOISE_REL_L2):
        return {"cosine_at_least": NOISE_COSINE, "rel_l2_at_most": NOISE_REL_L2}
    expected = getattr(layer, "expected_rel_l2", None)
    if expected is not None and rel_l2 is not None and cosine is not None:
        from netdiff.verdict import MAX_NOISY_REL_L2

        bound = min(context.report.thresholds.noise_factor * expected, MAX_NOISY_REL_L2)
        if rel_l2 <= bound:
            return {"rel_l2_at_most": float(f"{bound:.6g}"), "expected_rel_l2": float(f"{expected:.6g}")}
    return None


#: A diverged layer after an origin is a second introduction point when its isolated error is beyond the
#: thresholds and the precision's noise, clearly so (isolated rel_l2 at least :data:`CLEAR_REL_L2`, several
#: times a quantized layer's own rounding), and at least this share of its rel_l2 in the report (what it
#: adds itself is not small next to what it inherits).
OWN_ERROR_SHARE = 0.3
CLEAR_REL_L2 = 0.1


def isolated_wrong(context: Context, layer: LayerResult) -> bool:
    """True when ``layer``'s isolated re-run is beyond the thresholds and the precision's noise."""
    iso = layer.extra.get("isolated") if layer.extra else None
    if not isinstance(iso, dict) or iso.get("cosine") is None:
        return False
    cos, rel = iso["cosine"], iso.get("rel_l2")
    th = context.report.thresholds
    if cos >= th.cosine and (rel is None or rel <= th.rel_l2):
        return False
    return isolated_noise(context, layer, cos, rel) is None


def second_introductions(context: Context) -> list[str]:
    """Diverged layers after an origin (their inputs already diverge) that are wrong by themselves: the
    isolated re-run (on the target's own inputs, or recomputed from the nearest dumped tensors) is
    beyond the thresholds and the precision's noise, its rel_l2 at least :data:`CLEAR_REL_L2` and at
    least :data:`OWN_ERROR_SHARE` of the layer's (a layer that only inherits the error re-runs close to the target)."""
    if "second_introductions" not in context._memo:
        found = []
        for layer in context.report.layers:
            m = layer.metrics
            if layer.introduced or m is None or layer.status != "diverged" or not isolated_wrong(context, layer):
                continue
            if layer.name in context.behind_shape_mismatch() or looks_fused(layer):
                continue
            rel = layer.extra["isolated"].get("rel_l2")
            if rel is None or not math.isfinite(rel) or rel < max(CLEAR_REL_L2, context.report.thresholds.rel_l2):
                continue
            if math.isfinite(m.rel_l2) and rel < OWN_ERROR_SHARE * m.rel_l2:
                continue
            found.append(layer.name)
        context._memo["second_introductions"] = found
    return context._memo["second_introductions"]


def looks_fused(layer: LayerResult) -> bool:
    """True when the target may hold an activation of the layer (no negative value where the reference has
    some: a Conv+Relu fused by the converter), which its isolated re-run would wrongly count as its own error."""
    from netdiff.diagnosis.fused import ACTIVATIONS

    m = layer.metrics
    return layer.op_type not in ACTIVATIONS and m is not None and m.target_min >= 0 > m.ref_min


def introduction_points(context: Context) -> list[str]:
    """Where error is introduced, in report order: the origins and the :func:`second_introductions`."""
    points = set(context.report.origins) | set(second_introductions(context))
    return [x.name for x in context.report.layers if x.name in points]


def introduced_here(context: Context, layer: LayerResult) -> bool:
    """True when ``layer`` is an origin or a second introduction point."""
    return layer.introduced or layer.name in second_introductions(context)


def severity_at(context: Context, cosine_as_modelled: float) -> str:
    """"error" when the op as the model has it falls below the cosine threshold, else "warning"."""
    return "error" if cosine_as_modelled < context.report.thresholds.cosine else "warning"


def name_constant(k: float, rtol: float = 0.02) -> str | None:
    """Label of the well-known constant (255, 1/256, 4096, 2^n, ...) closest to ``k`` within ``rtol``,
    else None. The closest wins, so 1/256 (NNIE's default data_scale) is never named 1/255."""
    found = [(abs(k / value - 1.0), label) for value, label in _NAMED if abs(k / value - 1.0) <= rtol]
    if k > 0:
        n = round(math.log2(k))
        if n != 0 and abs(k / 2.0 ** n - 1.0) <= rtol:
            found.append((abs(k / 2.0 ** n - 1.0) + 1e-12, f"2^{n}"))  # a named constant wins a tie
    return min(found)[1] if found else None


def describe_factor(k: float) -> str:
    """A fitted factor for a message: its name with the fitted value ("1/256 (fitted 0.00390625)"), or the value."""
    label = name_constant(k)
    if not label:
        return f"{k:.6g}"
    if label.endswith(")"):  # "4096 (Q12)" -> "4096 (Q12, fitted 4096.2)"
        return f"{label[:-1]}, fitted {k:.6g})"
    return f"{label} (fitted {k:.6g})"


def channel_axis(shape: tuple[int, ...], layout: str | None = None) -> int | None:
    """Channel axis of an activation (1 for NCHW-like, -1 for NHWC), None when it has none."""
    if len(shape) < 3:
        return 1 if len(shape) == 2 and 1 < shape[1] <= 4 and shape[0] > 4 else None
    if layout == "NHWC":
        return len(shape) - 1
    if shape[1] > 4 >= shape[-1] > 1 and len(shape) == 4:
        return len(shape) - 1
    return 1


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two arrays over their finite pairs (NaN when a side is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return math.nan
    return float(np.dot(a, b) / (na * nb))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over finite pairs (NaN when a side is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    return cosine(a[keep] - a[keep].mean(), b[keep] - b[keep].mean()) if keep.any() else math.nan


def fmt_list(values: Iterable[float], digits: int = 4) -> str:
    """``[0.485, 0.456, 0.406]`` with ``digits`` significant digits."""
    return "[" + ", ".join(f"{float(v):.{digits}g}" for v in values) + "]"


def rounded(values: Iterable[float], digits: int = 6) -> list[float]:
    """Floats rounded to ``digits`` significant digits (for evidence)."""
    return [float(f"{float(v):.{digits}g}") for v in values]


def node_name(layer: LayerResult) -> str:
    """The ONNX node (or Caffe layer) that produces a layer's tensor, for toolchain options that take
    node names (nodes_to_exclude, node_block_list); the tensor name when unknown."""
    node = layer.extra.get("node") if layer.extra else None
    return str(node) if node else layer.name


def candidate_pairs(context: Context, where: Callable[[LayerResult], bool] | None = None
                    ) -> Iterator[tuple[LayerResult, np.ndarray, np.ndarray]]:
    """(layer, reference, aligned target) for each :func:`candidates` layer no rule has explained yet
    (and that ``where`` accepts, checked before any data is loaded)."""
    for layer in candidates(context):
        if layer.name in context.explained or (where is not None and not where(layer)):
            continue
        pair = context.cached_pair(layer)
        if pair is not None:
            yield layer, pair[0], pair[1]


def unexplained_origins(context: Context, op_types: Collection[str]) -> Iterator[tuple[LayerResult, Any, Any]]:
    """(layer, reference node, NodeIndex) for each :func:`candidates` layer no rule has explained yet
    that introduced its error and whose reference ONNX node is one of ``op_types``."""
    if context.model is None:
        return
    from netdiff.isolated import NodeIndex

    index = NodeIndex(context.model)
    for layer in candidates(context):
        node = index.producer.get(layer.name)
        if layer.name not in context.explained and introduced_here(context, layer) and node is not None and node.op_type in op_types:
            yield layer, node, index


def explain_origins(context: Context, op_types: Collection[str], explain: Callable[[Context, Any], Any],
                    inside: bool = True) -> Iterator[Any]:
    """For each origin to re-run with an op of ``op_types`` (a :class:`netdiff.diagnosis._sites.Site`:
    the origin's own op, or with ``inside`` one between the nearest dumped tensors and the origin),
    ``explain(context, site)``; a finding it returns claims the origin and is yielded (the hypothesis
    rules: weights, resize, axis, flatten)."""
    from netdiff.diagnosis._sites import explain_sites

    yield from explain_sites(context, op_types, explain, inside)
