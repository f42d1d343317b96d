"""Diagnosis rule "lint": run the target's lint rules on the reference and attach their findings to layers.

When the target format is known (nnie-* readers, simulated-nnie*, ascend), lint findings are
attached to the layers they flag (unsupported layer, ceil/floor pooling, fp16 overflow, ...). A
finding *explains* a divergence at its layer, and claims the layer so generic rules do not repeat
it, only when the layer itself broke: its isolated error (the reference op re-run on the target's
own inputs) is beyond the thresholds and the precision's noise. A layer that only inherited its
divergence (isolated error small), or whose own error could not be measured, keeps the finding
without the claim; a shape mismatch is explained only when the layer's inputs have their shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from netdiff.diagnosis._common import isolated_noise
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

_BAD = ("diverged", "shape_mismatch", "missing_in_target", "error")


def _tensor_for(context: Context) -> dict[str, str]:
    """Lint layer (Caffe layer / ONNX node) name -> reference tensor name (the node's first output)."""
    names: dict[str, str] = {}
    for tensor in context.reference:
        meta = tensor.meta or {}
        node = meta.get("node")
        if node is not None and int(meta.get("output_index", 0) or 0) == 0:
            names.setdefault(str(node), tensor.name)
    for tensor in context.reference:
        names.setdefault(tensor.name, tensor.name)
    return names


def _prepare(context: Context):  # noqa: ANN202
    from netdiff.lint.model import caffe_lint_model
    from netdiff.lint.onnx_to_caffe import onnx_lint_model

    path = str(context.report.reference.get("path", "") or "")
    if path.lower().endswith(".prototxt") and Path(path).is_file():
        prepared = caffe_lint_model(path)
        prepared.onnx = context.model
        return prepared
    if context.model is not None:
        return onnx_lint_model(context.model, path or "reference model")
    return None


@register_rule("lint")
def lint_reference(context: Context) -> Iterator[Finding]:
    """Lint findings of the reference model for the comparison's target, mapped onto report layers."""
    from netdiff.lint.base import LintOptions, run_rules, target_for_format

    target = target_for_format(context.target_format or "")
    if target is None:
        return
    prepared = _prepare(context)
    if prepared is None:
        return
    result = run_rules(prepared, target, LintOptions())
    tensors = _tensor_for(context)
    by_name = {layer.name: layer for layer in context.report.layers}
    for f in result.findings:
        layer = tensors.get(f.layer) if f.layer else None
        state = by_name[layer].status if layer in by_name else None
        if f.severity == "info" and state not in _BAD:
            continue
        message = f.message
        evidence = {**f.evidence, "lint_layer": f.layer, "layer_status": state}
        if state in _BAD:
            explains, why, facts = _explains(context, by_name[layer], by_name)
            evidence.update(facts)
            if explains:
                message += f" - this explains the {state.replace('_', ' ')} at {layer}{why}"
                context.claim(layer)
            else:
                message += f" - {layer} is {state.replace('_', ' ')}, but {why}"
                evidence["explains_divergence"] = False
        yield Finding(f.kind, layer, f.severity, message, evidence, f.suggestion)


def _explains(context: Context, layer: LayerResult, by_name: dict[str, LayerResult]) -> tuple[bool, str, dict]:
    """Whether ``layer``'s own error shows it broke (so a lint finding on it explains its status), the words
    why (or why not), and the measured facts."""
    if layer.status == "shape_mismatch":
        from netdiff.verdict import compared_ancestors

        inherited = [u.name for u in compared_ancestors(layer.inputs, by_name) if u.status == "shape_mismatch"]
        inherited += [i for i in layer.inputs if i in by_name and by_name[i].status == "shape_mismatch"]
        if inherited:
            return False, f"its input {sorted(set(inherited))[0]} already has another shape: inherited", {}
        return True, "", {}
    if layer.status != "diverged":
        return True, "", {}  # missing in the target, unreadable: the lint finding says why
    iso = layer.extra.get("isolated") or _isolated(context, layer, by_name)
    if not isinstance(iso, dict) or iso.get("cosine") is None:
        return False, "its own error could not be measured (no re-run on the target's inputs): not shown to explain it", {}
    cos, rel = iso["cosine"], iso.get("rel_l2")
    facts = {"isolated_cosine": float(f"{cos:.6g}")}
    th = context.report.thresholds
    broke = (cos < th.cosine or (rel is not None and rel > th.rel_l2)) and isolated_noise(context, layer, cos, rel) is None
    if broke:
        return True, f" (re-run on the target's own inputs, the layer alone reaches only cosine {cos:.5f})", facts
    return False, (f"re-run on the target's own inputs it reaches cosine {cos:.5f}: the divergence is inherited "
                   "from the layers before, not explained by this"), facts


def _isolated(context: Context, layer: LayerResult, by_name: dict[str, LayerResult]) -> dict | None:
    if context.model is None:
        return None
    from netdiff.isolated import NodeIndex, isolate_layer

    extra = isolate_layer(NodeIndex(context.model), layer, by_name, context.reference, context.target)
    if extra is None:
        return None
    layer.extra.update(extra)
    return extra["isolated"]
