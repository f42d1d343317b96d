"""End to end: ONNX reference vs target dumps with planted faults (the core acceptance)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import netdiff
from netdiff.cli import main
from netdiff.types import Thresholds
from tests.conftest import escape, save_target

CONV3 = "/features/conv3/Conv_output_0"


def perturb(value: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return value + 0.5 * value.std() * rng.standard_normal(value.shape).astype(value.dtype)


def test_perturbed_layer_is_first_divergence(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    target = save_target(cnn_reference, tmp_path / "t", rename=escape, perturb={CONV3: perturb})
    report = netdiff.compare(cnn_path, target, {"input": cnn_input_path})
    assert report.first_divergence == CONV3
    assert report.origins == [CONV3]
    layer = report.layer(CONV3)
    assert layer.introduced and layer.status == "diverged" and layer.match.method == "normalized"
    assert not report.layer("/features/bn3/BatchNormalization_output_0").introduced
    assert report.layer("/features/pool/MaxPool_output_0").status == "ok"


def test_clean_target_has_no_origin(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    target = save_target(cnn_reference, tmp_path / "t")
    report = netdiff.compare(cnn_path, target, cnn_input_path)
    assert report.first_divergence is None and report.origins == []
    assert not report.diverged and bool(report)
    assert all(x.status == "ok" for x in report.layers)


def test_nhwc_storage_with_escaped_names(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    target = save_target(cnn_reference, tmp_path / "t", rename=escape, nhwc=True, perturb={CONV3: perturb})
    report = netdiff.compare(cnn_path, target, cnn_input_path)
    assert report.first_divergence == CONV3
    conv1 = report.layer("/features/conv1/Conv_output_0")
    assert conv1.status == "ok" and conv1.match.transform.description == "NHWC->NCHW"
    assert report.summary()["counts"]["missing_in_target"] == 0


def test_second_onnx_model_is_a_valid_target(cnn_path, cnn_input_path):
    report = netdiff.compare(cnn_path, cnn_path, cnn_input_path)
    assert report.summary()["compared"] == len(report.layers) and not report.diverged


def test_thresholds_are_configurable(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    small = {CONV3: lambda v: v * 1.02}
    target = save_target(cnn_reference, tmp_path / "t", perturb=small)
    assert not netdiff.compare(cnn_path, target, cnn_input_path).diverged
    strict = netdiff.compare(cnn_path, target, cnn_input_path, thresholds=Thresholds(cosine=0.99, rel_l2=0.01))
    assert strict.first_divergence == CONV3


def test_demo_fault_propagates_with_error_gain(tmp_path):
    from netdiff.demo import build_demo

    case = build_demo(tmp_path)
    report = netdiff.compare(case.model, case.target, case.input)
    assert report.first_divergence == case.planted_layer
    conv3 = report.layer(case.planted_layer)
    assert conv3.error_gain > 5
    relu3 = report.layer("/features/relu3/Relu_output_0")
    assert relu3.status == "diverged" and not relu3.introduced and 0.5 < relu3.error_gain < 2


def test_truncated_tensor_file_is_error_layer_not_crash(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    target = save_target(cnn_reference, tmp_path / "t")
    victim = target / "_features_relu2_Relu_output_0.npy"
    victim = next(target.glob("*relu2*"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = netdiff.compare(cnn_path, target, cnn_input_path)
    assert any(x.status == "error" and "truncated" in x.reason for x in report.layers)
    assert main(["compare", str(cnn_path), str(target), "--input", str(cnn_input_path)]) == 1


def test_cli_compare_json_and_exit_codes(tmp_path, cnn_path, cnn_input_path, cnn_reference, capsys):
    bad = save_target(cnn_reference, tmp_path / "bad", rename=escape, perturb={CONV3: perturb})
    out = tmp_path / "r.json"
    csv = tmp_path / "r.csv"
    rc = main(["compare", str(cnn_path), str(bad), "--input", str(cnn_input_path), "--json", str(out), "--csv", str(csv)])
    assert rc == 1
    data = json.loads(out.read_text())
    for key in ("version", "reference", "target", "thresholds", "layers", "first_divergence", "origins",
                "findings", "summary"):
        assert key in data
    assert data["first_divergence"] == CONV3
    layer = next(x for x in data["layers"] if x["name"] == CONV3)
    for key in ("name", "target_name", "op_type", "order", "status", "metrics", "alignment", "introduced", "error_gain"):
        assert key in layer
    assert set(layer["metrics"]) >= {"cosine", "max_abs", "mean_abs", "rmse", "rel_l2", "sqnr_db", "max_rel",
                                     "mean_rel", "kl"}
    assert layer["alignment"]["method"] == "normalized"
    header = csv.read_text().splitlines()[0]
    assert "CosineSimilarity" in header and "RelativeEuclideanDistance" in header
    good = save_target(cnn_reference, tmp_path / "good")
    assert main(["compare", str(cnn_path), str(good), "--input", str(cnn_input_path)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["compare", "nope.onnx", "nope_dir"], "no such file"),
    (["compare", "{cnn}", "{cnn}", "--input", "input={missing}"], "does not exist"),
    (["compare", "{cnn}", "{cnn}", "--input", "wrong={inp}"], "unknown input"),
    (["compare", "{cnn}", "{cnn}", "--map", "{missing}"], "cannot read the mapping"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, cnn_path, cnn_input_path, tmp_path, capsys):
    args = [a.format(cnn=cnn_path, inp=cnn_input_path, missing=tmp_path / "missing.npy") for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if not line.startswith("netdiff: warning: ")]
    assert len(errors) == 1 and errors[0].startswith("netdiff: error: ")


def test_random_input_when_none_given(cnn_path, caplog):
    report = netdiff.compare(cnn_path, cnn_path)
    assert report.inputs == {"input": "random(seed=0)"}
    assert "random input" in caplog.text


def test_dynamic_input_requires_concrete_input(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "dyn.onnx"
    onnx.save(m, str(path))
    with pytest.raises(netdiff.errors.InputError, match="dynamic shape"):
        netdiff.compare(path, path)
    arr = tmp_path / "x.npy"
    np.save(arr, np.ones((2, 3), np.float32))
    assert not netdiff.compare(path, path, {"x": arr}).diverged


def test_external_data_model(tmp_path, cnn_path, cnn_input_path):
    """A model whose weights live in a separate file (onnx external data) runs like the inline one."""
    import onnx

    model = onnx.load(str(cnn_path))
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (path.parent / "weights.bin").stat().st_size > 10_000 and path.stat().st_size < 10_000
    report = netdiff.compare(path, cnn_path, cnn_input_path)
    assert report.summary()["compared"] == len(report.layers) and not report.failed
    from netdiff.runners.onnxrt import OnnxModel

    runner = OnnxModel(path)
    inline = OnnxModel(cnn_path).run({"input": np.load(cnn_input_path)})
    mapped = runner.run({"input": np.load(cnn_input_path)})
    assert runner._skeleton and len(runner._skeleton.weights) == len(model.graph.initializer)  # mapped from weights.bin
    assert all(np.array_equal(t.load(), inline[t.name].load()) for t in mapped)
    (path.parent / "weights.bin").unlink()
    assert main(["compare", str(path), str(cnn_path), "--input", str(cnn_input_path)]) == 2


def test_external_data_outside_the_model_folder_is_refused(tmp_path, cnn_path):
    import onnx

    from netdiff.errors import ModelError
    from netdiff.runners.onnxrt import OnnxModel

    model = onnx.load(str(cnn_path))
    (tmp_path / "models").mkdir()
    onnx.save_model(model, str(tmp_path / "models" / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    (tmp_path / "models" / "w.bin").rename(tmp_path / "secret.bin")
    bad = onnx.load(str(tmp_path / "models" / "m.onnx"), load_external_data=False)
    for init in bad.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save(bad, str(tmp_path / "models" / "m.onnx"))
    with pytest.raises(ModelError, match="outside the model's folder"):
        OnnxModel(tmp_path / "models" / "m.onnx").input_specs()


def test_unnamed_nodes_get_stable_names_and_every_tensor_is_captured(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from netdiff.runners.onnxrt import OnnxModel, node_names

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"], name="Relu_0")]  # clashes with a synthetic name
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert node_names(model) == ["Relu_0_", "Neg_1", "Relu_0"]
    assert node_names(model) == node_names(model)  # deterministic
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    dump = OnnxModel(path).run({"x": np.array([[1, -2, 3, -4]], np.float32)})
    assert dump.names == ["x", "a", "b", "y"]
    assert [dump[n].meta.get("node") for n in ("a", "b", "y")] == ["Relu_0_", "Neg_1", "Relu_0"]
    assert np.array_equal(dump["b"].load(), [[-1, 0, -3, 0]])


def test_capture_from_the_mapped_file_equals_capture_from_the_proto(cnn_path, cnn_input_path):
    """The weights stay in the memory-mapped file (a skeleton goes to onnxruntime, the initializers
    as views of the map): same tensors, bit-identical values, and the full model is still there."""
    import onnx
    from onnx import numpy_helper

    from netdiff.runners.onnxrt import OnnxModel

    x = {"input": np.load(cnn_input_path)}
    before = cnn_path.read_bytes()
    from_file = OnnxModel(cnn_path)
    a = from_file.run(x)
    assert cnn_path.read_bytes() == before  # mapped copy-on-write: the model file is never written
    skeleton = from_file._skeleton
    assert skeleton and skeleton.weights and from_file._model is None  # the weights were never read into Python
    assert len(skeleton.data) < cnn_path.stat().st_size / 2
    b = OnnxModel.from_proto(onnx.load(str(cnn_path))).run(x)
    assert a.names == b.names
    for t in a:
        assert np.array_equal(t.load(), b[t.name].load()), t.name
    full = {i.name: numpy_helper.to_array(i) for i in from_file.onnx_model().graph.initializer}
    assert set(skeleton.weights) <= set(full) and all(full[n].size for n in skeleton.weights)


def test_capture_with_unused_and_input_listed_initializers(tmp_path):
    """Exported models often carry unused initializers (onnxruntime drops them) and, before IR 4,
    list initializers among the graph inputs: the mapped-weights session handles both."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from netdiff.runners.onnxrt import OnnxModel

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    idx = np.arange(300, dtype=np.int64) % 64
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(idx, "idx"),
             numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "unused")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Gather", ["a", "idx"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
                                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 300])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    runner = OnnxModel(tmp_path / "m.onnx")
    assert [s.name for s in runner.input_specs()] == ["x"]
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.testing.assert_allclose(runner.run({"x": x})["y"].load(), (x @ w)[:, idx], rtol=1e-5, atol=1e-5)
    assert set(runner._skeleton.weights) == {"w", "idx", "unused"}


def test_capture_keeps_typed_and_small_initializers_inline(tmp_path):
    """Initializers stored as float_data (not raw bytes) or smaller than the mapping threshold stay in the skeleton."""
    import onnx
    from onnx import TensorProto, helper

    from netdiff.runners.onnxrt import OnnxModel

    rng = np.random.default_rng(3)
    big = rng.standard_normal((64, 64)).astype(np.float32)
    typed = helper.make_tensor("typed", TensorProto.FLOAT, [64, 64], big.T.ravel().tolist())  # float_data
    raw = helper.make_tensor("raw", TensorProto.FLOAT, [64, 64], big.tobytes(), raw=True)
    scale = np.linspace(0.5, 2.0, 64).astype(np.float32)  # 256 bytes: below the mapping threshold
    small = helper.make_tensor("small", TensorProto.FLOAT, [64], scale.tobytes(), raw=True)
    nodes = [helper.make_node("MatMul", ["x", "typed"], ["a"]), helper.make_node("MatMul", ["a", "raw"], ["b"]),
             helper.make_node("Mul", ["b", "small"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [typed, raw, small])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = rng.standard_normal((1, 64)).astype(np.float32)
    model = OnnxModel(path)
    dump = model.run({"x": x})
    assert set(model._skeleton.weights) == {"raw"}
    np.testing.assert_allclose(dump["a"].load(), x @ big.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dump["y"].load(), (x @ big.T @ big) * scale, rtol=1e-4, atol=1e-4)
