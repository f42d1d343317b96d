"""Lint on ONNX models: the Caffe layer each node would become (NNIE), and the Ascend checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lint_testkit import by_rule, rules  # noqa: E402

from netdiff.lint import lint  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=13, check=True):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return model


def _save(tmp_path, model, name="m.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype), name)


def clean_cnn():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Shape", ["p"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["shp"], name="cat_shape", axis=0),
             helper.make_node("Reshape", ["p", "shp"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fw"], ["y"], name="fc", transB=1)]
    inits = [_init("w", rng.normal(size=(4, 3, 3, 3))), _init("fw", rng.normal(size=(5, 64))),
             _init("zero", 0, np.int64), _init("ax0", [0], np.int64), _init("minus1", [-1], np.int64)]
    return _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 5])], inits)


def test_clean_onnx_model_is_clean_for_both_targets(tmp_path):
    path = _save(tmp_path, clean_cnn())
    nnie = lint(path, "nnie")
    # the Shape->Gather->Concat subgraph is folded; the Reshape to [N, 64] is the only (4-D) remark
    assert rules(nnie) == ["reshape-batch"] and nnie.findings[0].severity == "warning"
    assert nnie.layers == 5  # conv, relu, pool, reshape, fc
    assert lint(path, "ascend").findings == []


def test_onnx_nodes_mapped_to_caffe_layers_trigger_nnie_rules(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_nhwc_wrong", perm=[0, 2, 1, 3]),
             helper.make_node("MaxPool", ["x"], ["p"], name="pool_floor", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["x"], ["q"], name="pool_asym", kernel_shape=[3, 3],
                              pads=[0, 0, 1, 1]),
             helper.make_node("Tile", ["x", "reps"], ["tl"], name="tile_h"),
             helper.make_node("Slice", ["x", "st", "en", "axes"], ["sl"], name="slice_batch"),
             helper.make_node("HardSwish", ["x"], ["hs"], name="hswish"),
             helper.make_node("Pow", ["x", "four"], ["pw"], name="pow4"),
             helper.make_node("Clip", ["x", "zero_f", "six"], ["r6"], name="relu6")]
    inits = [_init("reps", [1, 1, 3, 1], np.int64), _init("st", [0], np.int64), _init("en", [1], np.int64),
             _init("axes", [0], np.int64), _init("four", 4.0), _init("zero_f", 0.0), _init("six", 6.0)]
    outs = [_vi(n, None) for n in ("t", "p", "q", "tl", "sl", "hs", "pw", "r6")]
    result = lint(_save(tmp_path, _model(nodes, [_vi("x", [2, 3, 7, 7])], outs, inits, opset=14, check=False)), "nnie")
    assert [f.layer for f in by_rule(result, "permute-order")] == ["to_nhwc_wrong"]
    (pool,) = by_rule(result, "pooling-rounding")
    assert pool.layer == "pool_floor" and pool.severity == "error"
    assert pool.evidence["source_size"] == [3, 3] and pool.evidence["nnie_size"] == [4, 4]
    assert [f.layer for f in by_rule(result, "asymmetric-pad")] == ["pool_asym"]
    unsupported = {f.layer: f for f in by_rule(result, "unsupported-layer")}
    assert set(unsupported) == {"tile_h", "hswish", "relu6"}
    assert "relu(x) - relu(relu(x) - 6)" in unsupported["relu6"].suggestion
    assert unsupported["tile_h"].evidence["axis"] == 2 and unsupported["tile_h"].evidence["tiles"] == 3
    assert "torch.cat" in unsupported["tile_h"].suggestion
    assert [f.layer for f in by_rule(result, "slice-axis0")] == ["slice_batch"]
    assert [f.layer for f in by_rule(result, "power-exponent")] == ["pow4"]


def test_ascend_constant_range_and_underflow(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "big"], ["m"], name="scale_up"),
             helper.make_node("Add", ["m", "eps"], ["d"], name="add_eps"),
             helper.make_node("Div", ["x", "d"], ["y"], name="divide")]
    inits = [_init("big", np.full((1, 3, 1, 1), 1e5)), _init("eps", 1e-12)]
    result = lint(_save(tmp_path, _model(nodes, [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 4, 4])], inits)), "ascend")
    found = {f.layer: f for f in by_rule(result, "fp16-constant-range")}
    assert found["scale_up"].evidence["max_abs"] == 1e5 and found["scale_up"].evidence["heuristic"] is True
    assert "65504" in found["scale_up"].message and "keep_dtype" in found["scale_up"].suggestion
    assert found["add_eps"].evidence["min_abs"] < 1e-11 and "becomes 0" in found["add_eps"].message
    assert result.failed


def test_ascend_tiny_conv_bias_is_no_vanishing_epsilon(tmp_path):
    """Conv biases of ~1e-9 (a ResNet-20 has five such layers) flush to 0 in fp16 harmlessly: no warning; a
    tiny constant that is only added, never divided by, neither. The same value guarding a Div is flagged."""
    w = np.random.default_rng(0).standard_normal((16, 3, 3, 3))
    bias = np.full(16, 1e-9)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "tiny"], ["y"], name="add_tiny")]
    inits = [_init("w", w), _init("b", bias), _init("tiny", 1e-9)]
    result = lint(_save(tmp_path, _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 16, 8, 8])], inits)), "ascend")
    assert "fp16-constant-range" not in rules(result) and not result.failed
    guarded = [*nodes, helper.make_node("Sqrt", ["y"], ["s"], name="sqrt"),
               helper.make_node("Div", ["c", "s"], ["z"], name="norm")]
    (tmp_path / "g").mkdir()
    result = lint(_save(tmp_path / "g", _model(guarded, [_vi("x", [1, 3, 8, 8])], [_vi("z", [1, 16, 8, 8])], inits)),
                  "ascend")
    assert [f.evidence["constant"] for f in by_rule(result, "fp16-constant-range")] == ["tiny"]


def test_ascend_activation_range_needs_input(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "k"], ["m"], name="mul"), helper.make_node("Relu", ["m"], ["y"], name="relu")]
    model = _model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], [_init("k", 1000.0)])
    path = _save(tmp_path, model)
    assert "fp16-activation-range" not in rules(lint(path, "ascend"))
    np.save(tmp_path / "x.npy", np.array([[1.0, 70.0, -100.0, 3.0]], np.float32))
    result = lint(path, "ascend", inputs=str(tmp_path / "x.npy"))
    found = by_rule(result, "fp16-activation-range")
    assert [f.evidence["tensor"] for f in found] == ["m", "y"]
    assert found[0].severity == "warning" and found[0].evidence["max_abs"] == 100000.0
    assert found[0].layer == "mul"


def test_ascend_dynamic_batch_and_int64(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             helper.make_node("Cast", ["ids"], ["ids64"], name="to_int64", to=TensorProto.INT64),
             helper.make_node("Mul", ["ids64", "two"], ["ids2"], name="double_ids")]
    model = _model(nodes, [_vi("x", ["batch", 3, 224, 224]), _vi("ids", ["batch", 5], TensorProto.INT32)],
                   [_vi("y", ["batch", 3, 224, 224]), _vi("ids2", ["batch", 5], TensorProto.INT64)],
                   [_init("two", 2, np.int64)])
    result = lint(_save(tmp_path, model), "ascend")
    (dyn,) = by_rule(result, "dynamic-shape")
    assert dyn.severity == "warning"
    assert '--input_shape="x:1,3,224,224;ids:1,5"' in dyn.suggestion
    assert '--input_shape="x:-1,3,224,224;ids:-1,5" --dynamic_batch_size="1,2,4,8"' in dyn.suggestion
    (cast,) = by_rule(result, "int64")
    assert cast.severity == "info" and cast.evidence["casts"] == ["to_int64"] and cast.evidence["heuristic"]


def test_ascend_dynamic_spatial_dims_suggest_dynamic_dims(tmp_path):
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", [1, 3, "h", "w"])],
                   [_vi("y", [1, 3, "h", "w"])])
    (dyn,) = by_rule(lint(_save(tmp_path, model), "ascend"), "dynamic-shape")
    assert "--dynamic_dims" in dyn.suggestion and "x:1,3,-1,-1" in dyn.suggestion


def test_ascend_on_caffe_net_reads_weights_through_translation(tmp_path):
    from lint_testkit import header, layer, write

    text = header(shape=(1, 2, 4, 4)) + layer("scale", "Scale", body="scale_param { bias_term: false }")
    proto = write(tmp_path / "big", text, weights={"scale": [np.array([1.0, 2e5])]})
    (finding,) = by_rule(lint(proto, "ascend"), "fp16-constant-range")
    assert finding.layer == "scale" and finding.evidence["max_abs"] == 2e5
    # no caffemodel: the constant check is skipped with a note, the structure checks still run
    bare = tmp_path / "bare" / "net.prototxt"
    bare.parent.mkdir()
    bare.write_text(text)
    result = lint(bare, "ascend")
    assert result.findings == [] and "weights not checked" in result.notes[0]
