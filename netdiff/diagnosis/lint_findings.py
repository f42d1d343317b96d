"""Diagnosis rule "lint": run the target's lint rules on the reference and attach their findings to layers.

When the target format is known (nnie-* readers, simulated-nnie*, ascend), a divergence at a layer
that lint flags (unsupported layer, ceil/floor pooling, fp16 overflow, ...) is explained by that
finding; the layer is claimed so generic rules do not repeat it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

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
    status = {layer.name: layer.status for layer in context.report.layers}
    for f in result.findings:
        layer = tensors.get(f.layer) if f.layer else None
        state = status.get(layer) if layer else None
        if f.severity == "info" and state not in _BAD:
            continue
        message = f.message
        if state in _BAD:
            message += f" - this explains the {state.replace('_', ' ')} at {layer}"
            context.claim(layer)
        evidence = {**f.evidence, "lint_layer": f.layer, "layer_status": state}
        yield Finding(f.kind, layer, f.severity, message, evidence, f.suggestion)
