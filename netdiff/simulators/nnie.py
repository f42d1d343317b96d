"""Simulate an NNIE .wk target from the float ONNX model: log-quantized weights and layer inputs.

* Calibration: the float model runs on every calibration sample; each tensor's top is the
  running max of |x| (GFPQ UPDATE mode).
* Weights (input 1 of Conv/ConvTranspose/Gemm/MatMul initializers) are log-quantized per tensor
  at their own max; biases stay float (their "24.0" format is undocumented).
* Every node input is log-quantized at its calibrated top, except where the NNIE fuses the node
  into its producer: BatchNormalization after Conv/ConvTranspose is folded into the weights
  (before quantizing them), and an activation (Relu, LeakyRelu, PRelu, Clip, Sigmoid, Tanh) right
  after a fused compute layer reads the accumulator, not a re-quantized input.
* Every float node output is rounded to Q20.12 (1/4096), as stored in DDR.
* A Caffe layer translated into several ONNX nodes (Normalize = ReduceSumSquare, Add, Sqrt, Div,
  Mul; Scale, Power, ...) runs as one layer, as the mapper runs it: its inputs quantized once, its
  intermediates in float, its output in Q20.12 (quantizing each piece flushes Normalize's sum of
  squares to 0 and divides 0 by 0). Groups are found by the translation's node names
  (``<layer>/<Op><k>`` then ``<layer>``); groups holding a weighted or folded node stay per node.

Nodes run one at a time with onnxruntime. See docs/nnie.md for the format and its sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


from netdiff._lazy import lazy_import
from netdiff.errors import ModelError, NetdiffError, ReferenceRunError, UnsupportedOpError
from netdiff.nnie.logquant import RunningMax, log_quantize, to_q12
from netdiff.simulators.base import Feeds, Simulator, register_simulator
from netdiff.types import Dump, Tensor

np = lazy_import("numpy")
onnx = lazy_import("onnx")

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FOLDABLE = ("Conv", "ConvTranspose")
ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh")


def calibrate(model: Any, samples: Sequence[Feeds]) -> RunningMax:
    """Run the float model on every sample and keep each float tensor's running max |x|."""
    from netdiff.runners.onnxrt import OnnxModel

    tops = RunningMax()
    runner = OnnxModel.from_proto(model, "<nnie calibration>")
    for sample in samples:
        for tensor in runner.run(sample):
            value = tensor.load()
            if np.asarray(value).dtype.kind == "f":
                tops.update(tensor.name, value)
    return tops


class _Plan:
    """Which nodes fold, which inputs skip re-quantization, and the weights to use."""

    def __init__(self, model: Any, fold_bn: bool) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.nodes = list(graph.node)
        self.init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        outputs = {o.name for o in graph.output}
        consumers: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for x in node.input:
                consumers.setdefault(x, []).append(i)
        self.folded: dict[int, int] = {}  # conv index -> BN index
        self.skip: set[int] = set()  # BN nodes folded away
        self.fused_inputs: set[tuple[int, str]] = set()  # (node index, input name) read unquantized
        producers = {out: i for i, n in enumerate(self.nodes) for out in n.output}
        compute: set[int] = {i for i, n in enumerate(self.nodes) if n.op_type in WEIGHTED}
        for i, node in enumerate(self.nodes):
            if not fold_bn or node.op_type not in FOLDABLE or len(node.input) < 2 or node.input[1] not in self.init:
                continue
            out = node.output[0]
            users = consumers.get(out, [])
            if len(users) == 1 and out not in outputs:
                j = users[0]
                bn = self.nodes[j]
                if bn.op_type == "BatchNormalization" and bn.input[0] == out and len(bn.output) == 1 \
                        and all(x in self.init for x in bn.input[1:5]):
                    self.folded[i] = j
                    self.skip.add(j)
        for i, node in enumerate(self.nodes):
            if node.op_type not in ACTIVATIONS or not node.input:
                continue
            src = node.input[0]
            p = producers.get(src)
            if p is None:
                continue
            if p in self.skip:  # the BN output is produced by its folded conv
                p = next(c for c, b in self.folded.items() if b == p)
            if p in compute and len(consumers.get(src, [])) == 1 and src not in outputs:
                self.fused_inputs.add((i, src))
        self.groups, self.grouped = self._layer_groups(consumers, outputs)

    def _layer_groups(self, consumers: dict[str, list[int]], outputs: set[str]) -> tuple[dict[int, list[int]], set[int]]:
        """Caffe layers translated into several nodes: last node index -> member indices, and the members."""
        import re

        by_name = {n.name: i for i, n in enumerate(self.nodes) if n.name}
        members: dict[int, list[int]] = {}
        for i, node in enumerate(self.nodes):
            m = re.fullmatch(r"(.+)/[A-Za-z]+\d+", node.name or "")
            last = by_name.get(m.group(1)) if m else None
            if last is not None and last > i:
                members.setdefault(last, []).append(i)
        groups: dict[int, list[int]] = {}
        grouped: set[int] = set()
        fused_nodes = {i for i, _ in self.fused_inputs}
        for last, inner in members.items():
            group = inner + [last]
            inner_set = set(inner)
            if any(self.nodes[i].op_type in WEIGHTED or i in self.folded or i in self.skip or i in fused_nodes
                   for i in group):
                continue
            internal = [o for i in inner for o in self.nodes[i].output if o]
            if any(o in outputs or any(c not in inner_set and c != last for c in consumers.get(o, []))
                   for o in internal):
                continue  # an intermediate is used outside the layer: keep the nodes apart
            groups[last] = group
            grouped.update(inner)
        return groups, grouped


def _fold(node: Any, bn: Any, init: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    w = init[node.input[1]].astype(np.float64)
    out_axis = 1 if node.op_type == "ConvTranspose" else 0
    channels = w.shape[out_axis] * (_group(node) if node.op_type == "ConvTranspose" else 1)
    b = init[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(channels)
    gamma, beta, mean, var = (init[x].astype(np.float64) for x in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    factor = gamma / np.sqrt(var + eps)
    if node.op_type == "ConvTranspose":
        g = _group(node)
        shaped = w.reshape((g, w.shape[0] // g, w.shape[1]) + w.shape[2:])
        shaped = shaped * factor.reshape((g, 1, -1) + (1,) * (w.ndim - 2))
        w = shaped.reshape(w.shape)
    else:
        w = w * factor.reshape((-1,) + (1,) * (w.ndim - 1))
    return w, (b - mean) * factor + beta


def _group(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def simulate_nnie(model: Any, feeds: Feeds, calibration: Sequence[Feeds], bits: int = 8,
                  hp_layers: Sequence[str] = (), fold_bn: bool = True, *, tops: RunningMax | None = None,
                  inputs_from: Dump | None = None) -> Dump:
    """Run ``model`` as an NNIE would: see the module docstring.

    Args:
        model: Float ONNX ModelProto.
        feeds: Inputs by name.
        calibration: Calibration samples (the mapper's image_list, preprocessed).
        bits: 8 (compile_mode 0) or 16 (compile_mode 1).
        hp_layers: Node or output names run at 16 bits (compile_mode 2 ``_hp`` layers).
        fold_bn: Fold BatchNormalization into the preceding convolution before quantizing.
        tops: Calibrated running maxima (computed from ``calibration`` when None).
        inputs_from: Take every node's (then quantized) inputs from this float dump instead of the
            simulated predecessors: each output is then that layer's *isolated* NNIE error.
    """
    from netdiff.runners.onnxrt import check_feeds, graph_input_specs, node_names

    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        raise UnsupportedOpError("the NNIE simulator runs nodes one by one and cannot run control flow (If/Loop/Scan)")
    specs = {s.name: s for s in graph_input_specs(model)}
    check_feeds(dict(feeds), specs)
    tops = tops if tops is not None else calibrate(model, calibration or [feeds])
    plan = _Plan(model, fold_bn)
    names = node_names(model)
    hp = set(hp_layers)
    env: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in feeds.items()}
    tensors: dict[str, Tensor] = {n: Tensor.from_array(n, env[n], op_type="Input", order=0, source="input") for n in specs}
    weights_done = 0
    for i, node in enumerate(plan.nodes):
        if i in plan.skip or i in plan.grouped:
            continue
        if i in plan.groups:
            group_bits = 16 if any(names[j] in hp or any(o in hp for o in plan.nodes[j].output)
                                   for j in plan.groups[i]) else bits
            _run_group(model, plan, [plan.nodes[j] for j in plan.groups[i]], names[i], i, env, tensors, tops,
                       group_bits, inputs_from)
            continue
        node_bits = 16 if names[i] in hp or any(o in hp for o in node.output) else bits
        inputs: list[np.ndarray | None] = []
        for k, x in enumerate(node.input):
            if not x:
                inputs.append(None)
                continue
            if x in plan.init:
                value = plan.init[x]
                if node.op_type in WEIGHTED and k == 1 and value.dtype.kind == "f":
                    weights_done += 1
                    value = log_quantize(value, float(np.max(np.abs(value))) if value.size else 0.0, node_bits)
                inputs.append(value)
                continue
            if inputs_from is not None and x in inputs_from:
                value = np.asarray(inputs_from[x].load())
            elif x not in env:
                raise ModelError(f"node {names[i]} reads {x!r}, which no earlier node produces (graph not topologically sorted?)")
            else:
                value = env[x]
            if value.dtype.kind == "f" and (i, x) not in plan.fused_inputs and x in tops:
                value = log_quantize(value, tops[x], node_bits)
            inputs.append(value)
        in_names = list(node.input)
        constants = {x for x in in_names if x in plan.init}
        out_names = list(node.output)
        fused_from: tuple[str, ...] = ()
        if i in plan.folded:
            bn = plan.nodes[plan.folded[i]]
            w, b = _fold(node, bn, plan.init)
            w = log_quantize(w.astype(plan.init[node.input[1]].dtype), float(np.max(np.abs(w))), node_bits)
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else f"{names[i]}__folded_bias"
            in_names, inputs = [node.input[0], node.input[1], bias], [inputs[0], w, b.astype(w.dtype)]
            constants = {node.input[1], bias}
            fused_from = (node.output[0],)
            out_names = [bn.output[0]]
        results = _run_node(model, node, names[i], in_names, inputs, constants, out_names)
        for k, (out, value) in enumerate(zip(out_names, results)):
            if not out:
                continue
            value = np.asarray(value)
            if value.dtype.kind == "f":
                value = to_q12(value).astype(value.dtype)
            env[out] = value
            meta: dict[str, Any] = {"node": names[i], "output_index": k, "bits": node_bits}
            if out in tops:
                meta["nnie_top"] = tops[out]
            tensors[out] = Tensor.from_array(out, value, op_type=node.op_type, order=i + 1,
                                             inputs=tuple(x for x in node.input if x and x not in plan.init),
                                             origin_names=fused_from + (out,) if fused_from else (),
                                             source="nnie simulator", meta=meta)
    meta = {"simulator": f"nnie{bits}", "bits": bits, "calibration_samples": len(calibration or [feeds]),
            "quantized_weights": weights_done, "folded_batchnorm": len(plan.folded),
            "data_format": "logarithmic (GFPQ), outputs Q20.12"}
    return Dump(tensors=tensors, source=f"simulated nnie{bits}", format=f"simulated-nnie{bits}",
                graph_inputs=list(specs), graph_outputs=[o.name for o in model.graph.output], meta=meta)


def _run_group(model: Any, plan: _Plan, nodes: list[Any], name: str, index: int, env: dict[str, np.ndarray],
               tensors: dict[str, Tensor], tops: RunningMax, bits: int, inputs_from: Dump | None) -> None:
    """Run the nodes of one Caffe layer as one NNIE layer: quantized inputs, float inside, Q20.12 output."""
    from onnx import helper, numpy_helper

    from netdiff.runners.onnxrt import make_session

    produced = {o for n in nodes for o in n.output if o}
    external = [x for n in nodes for x in n.input if x and x not in produced]
    feeds: dict[str, np.ndarray] = {}
    graph_inputs, initializers = [], []
    for x in dict.fromkeys(external):
        if x in plan.init:
            initializers.append(numpy_helper.from_array(np.asarray(plan.init[x]), x))
            continue
        if inputs_from is not None and x in inputs_from:
            value = np.asarray(inputs_from[x].load())
        elif x in env:
            value = env[x]
        else:
            raise ModelError(f"layer {name} reads {x!r}, which no earlier node produces (graph not topologically sorted?)")
        if value.dtype.kind == "f" and x in tops:
            value = log_quantize(value, tops[x], bits)
        feeds[x] = value
        graph_inputs.append(helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(value.dtype), None))
    last = nodes[-1]
    out_names = [o for o in last.output if o]
    graph = helper.make_graph(list(nodes), f"nnie_{name}", graph_inputs,
                              [onnx.ValueInfoProto(name=o) for o in out_names], initializers)
    single = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    single.functions.extend(model.functions)
    try:
        results = make_session(single).run(out_names, feeds)
    except Exception as e:
        raise ReferenceRunError(f"NNIE simulation of layer {name} ({', '.join(n.op_type for n in nodes)}) failed: "
                                f"{str(e).splitlines()[0]}") from e
    for k, (out, value) in enumerate(zip(out_names, results)):
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = to_q12(value).astype(value.dtype)
        env[out] = value
        meta: dict[str, Any] = {"node": name, "output_index": k, "bits": bits,
                                "layer_nodes": [n.op_type for n in nodes]}
        if out in tops:
            meta["nnie_top"] = tops[out]
        tensors[out] = Tensor.from_array(out, value, op_type=last.op_type, order=index + 1,
                                         inputs=tuple(dict.fromkeys(x for x in external if x not in plan.init)),
                                         source="nnie simulator", meta=meta)


def _run_node(model: Any, node: Any, name: str, in_names: list[str], inputs: list[np.ndarray | None],
              constants: set[str], out_names: list[str]) -> list[np.ndarray]:
    from onnx import helper, numpy_helper

    from netdiff.runners.onnxrt import make_session

    clone = onnx.NodeProto()
    clone.CopyFrom(node)
    del clone.input[:]
    clone.input.extend(in_names)
    del clone.output[:]
    clone.output.extend(out_names)
    feeds: dict[str, np.ndarray] = {}
    graph_inputs, initializers, seen = [], [], set()
    for x, value in zip(in_names, inputs):
        if not x or value is None or x in seen:
            continue
        seen.add(x)
        value = np.asarray(value)
        if x in constants:
            initializers.append(numpy_helper.from_array(value, x))
        else:
            feeds[x] = value
            graph_inputs.append(helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(value.dtype), None))
    outputs = [onnx.ValueInfoProto(name=o) for o in out_names if o]
    graph = helper.make_graph([clone], f"nnie_{name}", graph_inputs, outputs, initializers)
    single = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    single.functions.extend(model.functions)
    try:
        session = make_session(single)
        return session.run([o for o in out_names if o], feeds)
    except Exception as e:
        raise ReferenceRunError(f"NNIE simulation of node {name} ({node.op_type}) failed: {str(e).splitlines()[0]}") from e


class PreparedNnie:
    """An NNIE simulation calibrated once: the whole model, and each layer alone (isolated)."""

    def __init__(self, model: Any, calibration: Sequence[Feeds], bits: int, hp_layers: Sequence[str],
                 fold_bn: bool) -> None:
        self.model = model
        self.bits = bits
        self.hp_layers = tuple(hp_layers)
        self.fold_bn = fold_bn
        self.calibration = list(calibration)
        self.tops = calibrate(model, self.calibration)

    def _run(self, feeds: Feeds, inputs_from: Dump | None) -> Dump:
        return simulate_nnie(self.model, feeds, self.calibration, self.bits, self.hp_layers, self.fold_bn,
                             tops=self.tops, inputs_from=inputs_from)

    def dump(self, feeds: Feeds, reference: Dump | None = None) -> Dump:
        """The simulated target on ``feeds`` (every layer fed by the simulated layers before it)."""
        return self._run(feeds, None)

    def isolated(self, feeds: Feeds, reference: Dump) -> dict[str, np.ndarray]:
        """Each layer simulated alone on the float reference's inputs, by float tensor name."""
        return {t.name: t.load() for t in self._run(feeds, reference) if t.op_type != "Input"}


class _NnieSimulator(Simulator):
    needs_calibration = True
    bits = 8
    options = {"hp_layers": "node or output names run at 16 bits (compile_mode 2 '_hp' layers)",
               "fold_bn": "fold BatchNormalization into the preceding conv before quantizing (default true)"}

    def _simulate(self, model: Any, feeds: Feeds, calibration: Sequence[Feeds], **options: Any) -> Dump:
        return self.prepare(model, calibration or [feeds], **options).dump(feeds)

    def prepare(self, model: Any, calibration: Sequence[Feeds], **options: Any) -> PreparedNnie:
        """Calibrate once; the result runs the whole model and each layer alone."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to target '{self.name}'")
        hp = options.get("hp_layers", ())
        if isinstance(hp, str):
            hp = [h.strip() for h in hp.split(",") if h.strip()]
        fold = options.get("fold_bn", True)
        if isinstance(fold, str):
            fold = fold.strip().lower() not in ("0", "false", "no", "off")
        return PreparedNnie(model, calibration, self.bits, hp, bool(fold))


@register_simulator("nnie8")
class Nnie8Simulator(_NnieSimulator):
    """NNIE compile_mode 0: 8-bit log format (16 steps per octave, 8 octaves)."""

    summary = "HiSilicon NNIE 8-bit (compile_mode 0): log-quantized weights and layer inputs, Q20.12 outputs"
    bits = 8


@register_simulator("nnie16")
class Nnie16Simulator(_NnieSimulator):
    """NNIE compile_mode 1: 16-bit log format (128 steps per octave, 11 octaves)."""

    summary = "HiSilicon NNIE 16-bit (compile_mode 1): log-quantized weights and layer inputs, Q20.12 outputs"
    bits = 16
