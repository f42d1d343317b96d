"""End to end: ONNX reference vs synthetic Ascend dumps (fp16 NC1HWC0) with an om-JSON fusion map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ascend_dump_writer as w

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(11)


def build_model(path: Path) -> None:
    """x -> Conv_0 -> Relu_1 -> Conv_2 (20 ch) -> Sigmoid_3 -> GlobalAveragePool_4 -> Flatten_5 -> Gemm_6."""
    w0 = numpy_helper.from_array((RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w0")
    b0 = numpy_helper.from_array((RNG.standard_normal(8) * 0.1).astype(np.float32), "b0")
    w2 = numpy_helper.from_array((RNG.standard_normal((20, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    w6 = numpy_helper.from_array((RNG.standard_normal((10, 20))).astype(np.float32), "w6")
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["conv0_out"], name="Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv0_out"], ["relu1_out"], name="Relu_1"),
        helper.make_node("Conv", ["relu1_out", "w2"], ["conv2_out"], name="Conv_2", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["conv2_out"], ["sig3_out"], name="Sigmoid_3"),
        helper.make_node("GlobalAveragePool", ["sig3_out"], ["gap4_out"], name="GlobalAveragePool_4"),
        helper.make_node("Flatten", ["gap4_out"], ["flat5_out"], name="Flatten_5"),
        helper.make_node("Gemm", ["flat5_out", "w6"], ["y"], name="Gemm_6", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w0, b0, w2, w6])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _attr(key, value):
    return {"key": key, "value": value}


def _op(id_, name, type_, inputs, originals, origin, shape, layout, dtype="DT_FLOAT16", origin_index=0):
    attr = [] if originals is None else [_attr("_datadump_original_op_names", {"list": {"s": originals} if originals else {}})]
    desc_attr = [_attr("origin_format", {"s": "NCHW" if len(shape) == 4 else "ND"}),
                 _attr("origin_shape", {"list": {"i": list(shape)}})]
    if origin:
        desc_attr += [_attr("_datadump_origin_name", {"s": origin}),
                      _attr("_datadump_origin_output_index", {"i": origin_index})]
    return {"id": id_, "name": name, "type": type_, "input": inputs, "attr": attr,
            "output_desc": [{"dtype": dtype, "layout": layout, "attr": desc_attr}]}


def om_json() -> dict:
    return {"name": "tiny", "attr": [_attr("atc_cmdline", {"s": "atc --model=tiny.onnx --framework=5 --output=tiny "
                                                                "--soc_version=Ascend310 --precision_mode=force_fp16"})],
            "graph": [{"name": "tiny", "op": [
                _op(0, "x", "Data", [], None, None, (1, 3, 8, 8), "NCHW", dtype="DT_FLOAT"),
                _op(1, "trans_TransData_0", "TransData", ["x:0"], [], None, (1, 3, 8, 8), "NC1HWC0"),
                _op(2, "Conv_0Relu_1", "Conv2D", ["trans_TransData_0:0"], ["Conv_0", "Relu_1"], "Relu_1", (1, 8, 8, 8), "NC1HWC0"),
                _op(3, "Conv_2", "Conv2D", ["Conv_0Relu_1:0"], ["Conv_2"], "Conv_2", (1, 20, 8, 8), "NC1HWC0"),
                _op(4, "Sigmoid_3", "Sigmoid", ["Conv_2:0"], ["Sigmoid_3"], "Sigmoid_3", (1, 20, 8, 8), "NC1HWC0"),
                _op(5, "GlobalAveragePool_4", "ReduceMeanD", ["Sigmoid_3:0"], ["GlobalAveragePool_4"],
                    "GlobalAveragePool_4", (1, 20, 1, 1), "NC1HWC0"),
                _op(6, "Flatten_5", "FlattenV2", ["GlobalAveragePool_4:0"], ["Flatten_5"], "Flatten_5", (1, 20), "ND"),
                _op(7, "Gemm_6", "MatMulV2", ["Flatten_5:0"], ["Gemm_6"], "Gemm_6", (1, 10), "FRACTAL_NZ"),
                _op(8, "trans_Cast_7", "Cast", ["Gemm_6:0"], [], "Gemm_6", (1, 10), "ND", dtype="DT_FLOAT"),
            ]}]}


def write_npu_dumps(root: Path, values: dict[str, np.ndarray], x: np.ndarray, perturb: str) -> None:
    """Write the dumps the device would: fp16 device formats, one file per op, device names."""
    d = w.dump_dir(root, model="tiny", model_id=1, index=0)
    ts = 1690000000000000

    def fp16(a):
        return np.asarray(a, np.float32).astype(np.float16)

    def nc1hwc0(name, type_, a, task, source):
        dev, src = w.to_nc1hwc0(fp16(a), 16), w.to_nc1hwc0(fp16(source), 16)
        w.write(d, type_, w.DumpSpec(name, outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], dev.shape)],
                                     inputs=[w.Spec(src.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], src.shape)]),
                task=task, ts=ts + task)

    sig = values["sig3_out"].copy()
    if perturb == "Sigmoid_3":
        sig = sig * 0.5 + RNG.standard_normal(sig.shape).astype(np.float32) * 0.2
    # TransData: the model input (NCHW fp16 after the input Cast) -> NC1HWC0
    dev_x = w.to_nc1hwc0(fp16(x), 16)
    w.write(d, "TransData", w.DumpSpec("trans_TransData_0",
                                       outputs=[w.Spec(dev_x.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], dev_x.shape)],
                                       inputs=[w.Spec(fp16(x).tobytes(), w.DT["float16"], w.FMT["NCHW"], x.shape)]),
            task=1, ts=ts + 1)
    nc1hwc0("Conv_0Relu_1", "Conv2D", values["relu1_out"], 2, x)
    nc1hwc0("Conv_2", "Conv2D", values["conv2_out"], 3, values["relu1_out"])
    nc1hwc0("Sigmoid_3", "Sigmoid", sig, 4, values["conv2_out"])
    nc1hwc0("GlobalAveragePool_4", "ReduceMeanD", values["gap4_out"], 5, sig)
    flat = fp16(values["flat5_out"])
    w.write(d, "FlattenV2", w.DumpSpec("Flatten_5", outputs=[w.Spec(flat.tobytes(), w.DT["float16"], w.FMT["ND"], flat.shape)]),
            task=6, ts=ts + 6)
    nz = w.to_fractal_nz(fp16(values["y"]))
    w.write(d, "MatMulV2", w.DumpSpec("Gemm_6", outputs=[w.Spec(nz.tobytes(), w.DT["float16"], w.FMT["FRACTAL_NZ"], nz.shape,
                                                                  (1, 10))]), task=7, ts=ts + 7)
    y32 = fp16(values["y"]).astype(np.float32)
    w.write(d, "Cast", w.DumpSpec("trans_Cast_7", outputs=[w.Spec(y32.tobytes(), w.DT["float32"], w.FMT["ND"], y32.shape)]),
            task=8, ts=ts + 8)
    # an earlier iteration of Sigmoid_3 with garbage: the last file by timestamp must win
    junk = w.to_nc1hwc0(np.full((1, 20, 8, 8), 9.0, np.float16), 16)
    w.write(d, "Sigmoid", w.DumpSpec("Sigmoid_3", outputs=[w.Spec(junk.tobytes(), 2, w.FMT["NC1HWC0"], junk.shape)]),
            task=4, ts=ts)


@pytest.fixture()
def setup(tmp_path):
    from netdiff.runners.onnxrt import OnnxModel

    model_path = tmp_path / "tiny.onnx"
    build_model(model_path)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = OnnxModel(model_path).run({"x": x})
    values = {t.name: np.asarray(t.load()) for t in ref}
    fmap = tmp_path / "tiny.json"
    fmap.write_text(json.dumps(om_json()))
    return tmp_path, model_path, x, values, fmap


def test_compare_finds_the_perturbed_op(setup):
    pytest.importorskip("netdiff.pipeline")
    import netdiff

    tmp_path, model_path, x, values, fmap = setup
    root = tmp_path / "dump"
    write_npu_dumps(root, values, x, perturb="Sigmoid_3")
    report = netdiff.compare(model_path, root, inputs={"x": x}, target_options={"fusion_map": str(fmap)})
    assert report.first_divergence == "sig3_out"
    layers = {layer.name: layer for layer in report.layers}
    assert layers["sig3_out"].status == "diverged" and layers["sig3_out"].target_name == "Sigmoid_3"
    # the fused Conv+Relu holds Relu_1's value; Conv_0's output is reported as fused, not compared
    assert layers["relu1_out"].target_name == "Conv_0Relu_1" and layers["relu1_out"].status == "ok"
    assert layers["relu1_out"].match.method == "fusion-map"
    assert layers["conv0_out"].status == "not_observable"
    assert layers["conv2_out"].status == "ok" and layers["y"].status in ("ok", "diverged")
    assert {"trans_TransData_0", "trans_Cast_7", "Conv_2:input:0"} <= set(report.meta["target_only"])
    # the model input is compared where the device first consumed it
    assert layers["x"].target_name == "trans_TransData_0:input:0" and layers["x"].status == "ok"
    assert report.meta["target.precision_mode"] == "force_fp16"
    assert report.meta["target.format_name"] == "Ascend"


def test_compare_without_perturbation_is_clean(setup):
    pytest.importorskip("netdiff.pipeline")
    import netdiff

    tmp_path, model_path, x, values, fmap = setup
    root = tmp_path / "dump"
    write_npu_dumps(root, values, x, perturb="")
    report = netdiff.compare(model_path, root, inputs={"x": x}, target_options={"fusion_map": str(fmap)})
    assert report.first_divergence is None and not report.diverged
    compared = {layer.name for layer in report.layers if layer.metrics is not None}
    assert {"x", "relu1_out", "conv2_out", "sig3_out", "gap4_out", "flat5_out", "y"} <= compared


def test_reader_values_match_reference_in_framework_layout(setup):
    from netdiff.readers import read_dump

    tmp_path, model_path, x, values, fmap = setup
    root = tmp_path / "dump"
    write_npu_dumps(root, values, x, perturb="")
    dump = read_dump(root, fusion_map=fmap)
    assert dump.names[:3] == ["trans_TransData_0", "trans_TransData_0:input:0", "Conv_0Relu_1"]
    for target, ref in [("Conv_0Relu_1", "relu1_out"), ("Conv_2", "conv2_out"), ("GlobalAveragePool_4", "gap4_out"),
                        ("Gemm_6", "y")]:
        got = dump[target].load()
        assert got.shape == values[ref].shape
        np.testing.assert_allclose(got.astype(np.float32), values[ref], rtol=2e-3, atol=2e-3)
    assert dump["Conv_0Relu_1"].origin_names == ("Conv_0", "Relu_1")
    assert dump["Conv_2"].inputs == ("Conv_0Relu_1",)


def test_cli_compare_with_fusion_map(setup, capsys):
    pytest.importorskip("netdiff.pipeline")
    from netdiff.cli import main

    tmp_path, model_path, x, values, fmap = setup
    root = tmp_path / "dump"
    write_npu_dumps(root, values, x, perturb="Sigmoid_3")
    np.save(tmp_path / "x.npy", x)
    code = main(["compare", str(model_path), str(root), "--fusion-map", str(fmap), "--input", f"x={tmp_path / 'x.npy'}",
                 "--json", str(tmp_path / "r.json")])
    assert code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["first_divergence"] == "sig3_out"
