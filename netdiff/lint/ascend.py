"""Ascend (ATC -> .om) lint rules, limited to facts with a public source (see docs/lint.md).

ATC's default ``--precision_mode`` is ``force_fp16``: an op that supports fp16 and fp32 runs in fp16
(ascend.md §5, CANN ATC/AOE docs). Which ops support what is not public in one list, so the range
checks say which values *would* overflow in fp16 and are marked heuristic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from netdiff.lint.base import LintModel, LintOptions, LintRule, register_lint_rule
from netdiff.types import Finding

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24  # smallest fp16 subnormal; smaller magnitudes become 0
SRC_FP16 = ("ascend.md §5: --precision_mode default force_fp16 (CANN ATC docs atlasatcparam_16_0068, "
            "aoepar_16_042); IEEE fp16 max 65504")
_INT64 = 7  # onnx.TensorProto.INT64


def _consumers(graph: Any) -> dict[str, str]:
    first: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            first.setdefault(name, node.name or f"{node.op_type}_{index}")
    return first


#: Ops that fail on a zero input (inf / NaN), with the input index that must not be zero.
_ZERO_FAILS = {"Div": 1, "Reciprocal": 0, "Log": 0, "Pow": 0}
#: Ops an epsilon passes through on its way to a division (LayerNorm decomposed: var + eps -> Sqrt -> Div).
_PASSES = {"Add", "Sum", "Max", "Clip", "Sqrt", "Abs", "Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Expand"}


def guards_division(graph: Any, name: str, depth: int = 4) -> bool:
    """True when tensor ``name`` reaches an input that must not be zero (a Div's divisor, a Reciprocal, a Log)
    through at most ``depth`` additions/square roots: an epsilon that keeps a division finite. A conv bias or
    any other small constant that is only added is harmless when it flushes to 0."""
    frontier = {name}
    for _ in range(depth):
        reached = set()
        for node in graph.node:
            for index, tensor in enumerate(node.input):
                if tensor not in frontier:
                    continue
                if _ZERO_FAILS.get(node.op_type) == index:
                    return True
                if node.op_type in _PASSES:
                    reached.update(o for o in node.output if o)
        if not reached:
            return False
        frontier = reached
    return False


def _constants(graph: Any) -> Iterator[tuple[str, np.ndarray]]:
    from onnx import numpy_helper

    for init in graph.initializer:
        yield init.name, numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    yield node.output[0], numpy_helper.to_array(attr.t)


@register_lint_rule("ascend", "fp16-constant-range", kind="semantic_mismatch", severity="warning", heuristic=True,
                    source=SRC_FP16,
                    summary="Float constants/weights beyond +-65504 (become inf in fp16) or small nonzero constants "
                            "below 2^-24 that keep a division finite (epsilons: become 0, divide by zero).")
def check_constants(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    if model.onnx is None:
        return
    consumer = _consumers(model.onnx.graph)
    for name, array in _constants(model.onnx.graph):
        if array.dtype.kind != "f" or array.size == 0:
            continue
        a = np.abs(array.astype(np.float64, copy=False))
        finite = a[np.isfinite(a)]
        peak = float(finite.max()) if finite.size else 0.0
        layer = consumer.get(name, name)
        if peak > FP16_MAX:
            over = int((finite > FP16_MAX).sum())
            yield rule.finding(layer, f"constant {name!r} (read by {layer!r}) holds {over} value(s) beyond fp16's "
                               f"65504 (max |x| = {peak:.6g}); under the default force_fp16 they become inf",
                               "rescale the constant (fold the factor into a neighbouring layer), or keep the op in "
                               "fp32: atc --keep_dtype / --precision_mode=must_keep_origin_dtype",
                               constant=name, max_abs=peak, count=over)
            continue
        nonzero = finite[finite > 0]
        if 0 < nonzero.size <= 16 and float(nonzero.min()) < FP16_TINY and guards_division(model.onnx.graph, name):
            yield rule.finding(layer, f"small constant {name!r} (read by {layer!r}) = {float(nonzero.min()):.3g} is "
                               "below fp16's smallest subnormal 2^-24 and becomes 0 under force_fp16 (an epsilon "
                               "that vanishes can divide by zero)", "raise it to >= 1e-7 (e.g. eps 1e-5), or keep "
                               "the op in fp32 with atc --keep_dtype", constant=name, min_abs=float(nonzero.min()))


@register_lint_rule("ascend", "fp16-activation-range", kind="semantic_mismatch", severity="warning", heuristic=True,
                    source=SRC_FP16 + "; values from a float run of the model on --input",
                    summary="Activations beyond +-65504 in a float run on the given input (needs --input).")
def check_activations(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    if options.inputs is None:
        return
    from netdiff.inputs import resolve_feeds
    from netdiff.runners import load_model

    runner = load_model(model.path, weights=options.weights)
    feeds, _ = resolve_feeds(runner.input_specs(), options.inputs, seed=options.seed)
    dump = runner.run(feeds)
    over = []
    for tensor in dump:
        data = np.asarray(tensor.load())
        if data.dtype.kind != "f" or data.size == 0:
            continue
        finite = np.abs(data[np.isfinite(data)])
        peak = float(finite.max()) if finite.size else 0.0
        if peak > FP16_MAX:
            over.append((tensor, peak, int((finite > FP16_MAX).sum())))
    for tensor, peak, count in over:
        node = str(tensor.meta.get("node", tensor.name)) if tensor.meta else tensor.name
        first = tensor is over[0][0]
        yield rule.finding(node, f"tensor {tensor.name!r} ({tensor.op_type or 'op'}) reaches |x| = {peak:.6g} on "
                           f"this input ({count} values beyond 65504): inf in fp16 under force_fp16"
                           + (" - the first such tensor" if first else ""),
                           "keep this op (and its producer chain) in fp32 with atc --keep_dtype=<file> or "
                           "--modify_mixlist, or scale the activations down before it",
                           severity="warning" if first else "info", tensor=tensor.name, max_abs=peak, count=count)


@register_lint_rule("ascend", "dynamic-shape", kind="unsupported_layer", severity="warning",
                    source="CANN ATC docs: --input_shape is mandatory when an input dim is not fixed; -1 with "
                           "--dynamic_batch_size (N first only) or --dynamic_dims (atlasatcparam_16_0018, "
                           "aoerc_16_0026, error E10018)",
                    summary="Graph inputs with dynamic dims: ATC needs --input_shape (and --dynamic_batch_size or "
                            "--dynamic_dims for several sizes).")
def check_dynamic(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    dynamic = {n: s for n, s in model.inputs.items() if s is not None and any(d is None for d in s)}
    if not dynamic:
        return
    fixed = ";".join(f"{n}:" + ",".join(str(d) if d is not None else ("1" if i == 0 else f"<d{i}>")
                                        for i, d in enumerate(s)) for n, s in dynamic.items())
    batch_only = all(s[0] is None and all(d is not None for d in s[1:]) for s in dynamic.values())
    if batch_only:
        ranged = ";".join(f"{n}:" + ",".join(["-1"] + [str(d) for d in s[1:]]) for n, s in dynamic.items())
        several = f'--input_shape="{ranged}" --dynamic_batch_size="1,2,4,8"'
    else:
        ranged = ";".join(f"{n}:" + ",".join("-1" if d is None else str(d) for d in s) for n, s in dynamic.items())
        several = f'--input_shape="{ranged}" --dynamic_dims="<one profile per size, e.g. 224,224;320,320>"'
    desc = ", ".join(f"{n} {['?' if d is None else d for d in s]}" for n, s in dynamic.items())
    yield rule.finding(None, f"input(s) with dynamic dims: {desc}; atc needs --input_shape for them",
                       f'fix the shape: atc ... --input_shape="{fixed}"; or for several sizes: atc ... {several}',
                       inputs={n: [None if d is None else d for d in s] for n, s in dynamic.items()})


@register_lint_rule("ascend", "int64", kind="semantic_mismatch", severity="info", heuristic=True,
                    source="CANN ATC 'Call Process' (atlasatc_16_0006): an AI CPU op that does not support a "
                           "dtype fails compilation (Cast auto-insertion is the documented way out); which ops "
                           "lack int64 is not listed publicly",
                    summary="int64 graph inputs and Casts to int64 outside constant subgraphs.")
def check_int64(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    inputs = [n for n, d in model.input_dtypes.items() if d == "int64"]
    casts = []
    if model.onnx is not None:
        layer_names = {layer.name for layer in model.layers}
        index = {id(n): i for i, n in enumerate(model.onnx.graph.node)}
        for node in model.onnx.graph.node:
            name = node.name or f"{node.op_type}_{index[id(node)]}"
            if node.op_type == "Cast" and any(a.name == "to" and a.i == _INT64 for a in node.attribute):
                if model.format == "caffe" or name in layer_names or _runtime_input(node, model):
                    casts.append(name)
    if inputs:
        yield rule.finding(None, f"int64 input(s) {', '.join(inputs)}: check the ATC log for ops that reject int64 "
                           "or fall back to AI CPU", "feed int32 if the model allows it (export with int32 "
                           "indices)", inputs=inputs)
    if casts:
        yield rule.finding(casts[0], f"{len(casts)} Cast(s) to int64 on runtime data ({', '.join(casts[:5])})",
                           "cast to int32 instead where the values fit; check the ATC log for AI CPU placement",
                           casts=casts)


def _runtime_input(node: Any, model: LintModel) -> bool:
    """True when the Cast reads a tensor that is not a folded constant (it ran as a layer or is an input)."""
    produced = {t for layer in model.layers for t in layer.tops} | set(model.inputs)
    return any(i in produced for i in node.input)
