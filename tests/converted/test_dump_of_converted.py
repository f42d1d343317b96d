"""A netdiff dump of a converted model compares like the model: the manifest records the graph
kind and a graph skeleton (nodes, Q/DQ scales), and compare adapts the dump with it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import netdiff
from netdiff.dumping import dump_model

from .conftest import MODELS
from .test_converted_models import false_alarms
from .test_input_quantization import out_of_range_input


@pytest.fixture(scope="module")
def qdq_dumps(converted, tmp_path_factory):
    spec = MODELS["small_cnn"]
    model = converted("small_cnn", "qdq-per-tensor")
    root = tmp_path_factory.mktemp("qdqdump")
    clean, clipped = root / "clean", root / "clipped"
    dump_model(model, clean, {"input": spec["test"]()})
    dump_model(model, clipped, {"input": out_of_range_input()})
    return model, clean, clipped


@pytest.mark.parametrize("precision", ["int8", None])
def test_dump_of_qdq_model_compares_like_the_model(qdq_dumps, precision):
    model, clean, _ = qdq_dumps
    spec = MODELS["small_cnn"]
    manifest = json.loads((clean / "manifest.json").read_text())
    assert manifest["meta"]["graph_kind"] == "qdq" and manifest["version"] == 1
    report = netdiff.compare(spec["path"], clean, {"input": spec["test"]()}, precision=precision)
    assert not false_alarms(report), [f.message for f in report.findings]
    assert report.first_divergence is None and not report.diverged
    assert report.summary()["counts"]["missing_in_reference"] == 0
    quantized = {o for n in onnx.load(model).graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    assert quantized <= set(report.meta["target_only"])
    conv = report.layer("/features/conv1/Conv_output_0")  # the quantizer's Relu-removal trap, content-checked
    assert conv.target_name == "/features/relu1/Relu_output_0" and conv.match.method == "content"
    assert report.meta["precision"]["kind"] == "int8"
    direct = netdiff.compare(spec["path"], model, {"input": spec["test"]()}, precision=precision)
    for a, b in zip(direct.layers, report.layers):
        assert (a.name, a.target_name, a.status) == (b.name, b.target_name, b.status)
        if a.metrics is not None:
            assert np.isclose(a.metrics.cosine, b.metrics.cosine, atol=1e-6)


def test_dump_of_qdq_model_names_input_clipping(qdq_dumps):
    _, _, clipped = qdq_dumps
    report = netdiff.compare(MODELS["small_cnn"]["path"], clipped, {"input": out_of_range_input()}, precision="int8")
    assert report.first_divergence == "input"
    assert [f.kind for f in report.findings if f.layer == "input"] == ["quantization_saturation"]
    assert not [f for f in report.findings if f.layer in ("/features/relu1/Relu_output_0",
                                                          "/features/conv1/Conv_output_0")]
    # the skeleton's Q/DQ scales give the Gemm output's quantized range: its saturation is named from the dump too
    gemm = [f for f in report.findings if f.layer == "/classifier/Gemm_output_0"]
    assert [f.kind for f in gemm] == ["quantization_saturation"] and gemm[0].evidence["clipped"]["cosine"] > 0.999


def test_float_model_dump_records_no_graph(tmp_path):
    spec = MODELS["small_cnn"]
    dump_model(spec["path"], tmp_path / "d", {"input": spec["test"]()})
    meta = json.loads((tmp_path / "d" / "manifest.json").read_text())["meta"]
    assert "graph" not in meta and "graph_kind" not in meta


def test_broken_graph_record_is_a_warning_not_a_traceback(qdq_dumps, tmp_path):
    import shutil

    _, clean, _ = qdq_dumps
    copy = tmp_path / "broken"
    shutil.copytree(clean, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["meta"]["graph"]["nodes"][0] = ["x", 3]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], copy, {"input": spec["test"]()}, precision="int8")
    assert report.meta["target.adaptation_error"].startswith("ValueError")
