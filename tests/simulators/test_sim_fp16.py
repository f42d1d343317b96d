"""fp16 simulator: the converter, name-preserving dumps, isolated error, and fp16 overflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from netdiff.runners.onnxrt import OnnxModel, node_outputs
from netdiff.simulators import get_simulator
from netdiff.simulators.fp16 import convert_to_fp16, prepare_fp16
from netdiff.simulators.run import run_simulated

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_converter_keeps_io_float32_and_names(cnn_path: Path) -> None:
    model = onnx.load(str(cnn_path))
    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted)
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in converted.graph.output] == [TensorProto.FLOAT]
    assert all(i.data_type == TensorProto.FLOAT16 for i in converted.graph.initializer)
    produced = {o for n in converted.graph.node for o in n.output}
    assert {o.name for o in node_outputs(model)} <= produced
    # the original model is untouched
    assert all(i.data_type == TensorProto.FLOAT for i in model.graph.initializer)


def test_fp16_dump_aligns_by_name_and_is_close(cnn_path: Path, cnn_input_path: Path) -> None:
    model = onnx.load(str(cnn_path))
    x = np.load(cnn_input_path)
    dump = get_simulator("fp16").simulate(model, {"input": x})
    reference = OnnxModel(cnn_path).run({"input": x})
    names = [o.name for o in node_outputs(model)]
    assert set(names) <= set(dump.names)
    for name in names:
        t = dump[name].load()
        assert t.dtype == np.float32 and dump[name].meta["dtype"] == "float16"
        assert _cos(reference[name].load(), t) > 0.9999
        # values really went through float16
        assert np.array_equal(t, t.astype(np.float16).astype(np.float32))


def test_constants_casts_shapes_and_resize_convert() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Constant", [], ["k"], value_float=0.5, name="k"),
        helper.make_node("Mul", ["x", "k"], ["m"], name="mul"),
        helper.make_node("Shape", ["m"], ["s"], name="shape"),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("ReduceSum", ["sf"], ["n"], keepdims=1, name="sum"),
        helper.make_node("Resize", ["m", "", "scales"], ["r"], mode="nearest", name="resize"),
        helper.make_node("Add", ["r", "n"], ["y"], name="add"),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)}
    target = prepare_fp16(model)
    resize_scales = [i for i in target.model.graph.initializer if i.name == "scales"][0]
    assert resize_scales.data_type == TensorProto.FLOAT  # Resize scales must stay float32
    out = target.outputs(feeds)["y"]
    ref = OnnxModel.from_proto(model).run(feeds)["y"].load()
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)


def test_isolated_error_is_per_layer(cnn_path: Path, cnn_input_path: Path) -> None:
    model = onnx.load(str(cnn_path))
    feeds = {"input": np.load(cnn_input_path)}
    target = prepare_fp16(model)
    reference = OnnxModel(cnn_path).run(feeds)
    iso = target.isolated(feeds, reference)
    assert set(iso) == {o.name for o in node_outputs(model)}
    # a Relu on float16-rounded float inputs only rounds: isolated error is at most one fp16 ulp
    relu = "/features/relu2/Relu_output_0"
    r = reference[relu].load()
    assert np.all(np.abs(iso[relu] - r) <= np.abs(r) * 2 ** -10 + 1e-7)
    # accumulated error at the output is larger than the output layer's own error
    acc = target.dump(feeds)["probs"].load()
    assert np.abs(acc - reference["probs"].load()).max() >= np.abs(iso["probs"] - reference["probs"].load()).max()


def test_fp16_overflow_is_first_divergence() -> None:
    from netdiff.diagnosis import rule_names

    model = FIXTURES / "sim_overflow.onnx"
    report = run_simulated(model, "fp16", FIXTURES / "sim_input.npy")
    overflow = "/body/norm/ReduceSum_output_0"
    assert report.first_divergence == overflow
    assert report.layer("/body/relu2/Relu_output_0").status == "ok"
    assert report.layer(overflow).metrics.target_inf == 1
    assert report.meta["simulator"]["aligned"] == report.meta["simulator"]["float_tensors"] == 9
    if not any(n.replace("-", "_") == "fp16_overflow" for n in rule_names()):
        pytest.skip("the fp16_overflow diagnosis rule is not registered yet")
    kinds = [(f.kind, f.layer) for f in report.findings]
    assert ("fp16_overflow", overflow) in kinds
