"""Blob-named dumps of a Caffe net with in-place layers (ResNet style: BatchNorm, Scale, ReLU on the conv blob)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import netdiff
from caffe_testkit import write_model
from netdiff.cli import main
from netdiff.runners.caffe import CaffeModel

RESNET_BLOCK = """name: "resnet_block"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "Convolution1" type: "Convolution" bottom: "data" top: "Convolution1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "BatchNorm1" type: "BatchNorm" bottom: "Convolution1" top: "Convolution1" }
layer { name: "Scale1" type: "Scale" bottom: "Convolution1" top: "Convolution1" scale_param { bias_term: true } }
layer { name: "ReLU1" type: "ReLU" bottom: "Convolution1" top: "Convolution1" }
layer { name: "Convolution2" type: "Convolution" bottom: "Convolution1" top: "Convolution2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "BatchNorm2" type: "BatchNorm" bottom: "Convolution2" top: "Convolution2" }
layer { name: "Scale2" type: "Scale" bottom: "Convolution2" top: "Convolution2" scale_param { bias_term: true } }
layer { name: "Eltwise1" type: "Eltwise" bottom: "Convolution1" bottom: "Convolution2" top: "Eltwise1" }
layer { name: "ReLU2" type: "ReLU" bottom: "Eltwise1" top: "Eltwise1" }
layer { name: "Pooling1" type: "Pooling" bottom: "Eltwise1" top: "Pooling1" pooling_param { pool: AVE global_pooling: true } }
layer { name: "InnerProduct1" type: "InnerProduct" bottom: "Pooling1" top: "InnerProduct1" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "InnerProduct1" top: "prob" }
"""


def _weights():
    rng = np.random.default_rng(0)
    f = np.float32

    def bn(c):
        return [rng.standard_normal(c).astype(f) * 0.1, (rng.random(c) + 0.5).astype(f), np.ones(1, f)]

    return {"Convolution1": [rng.standard_normal((8, 3, 3, 3)).astype(f) * 0.3, rng.standard_normal(8).astype(f) * 0.1],
            "BatchNorm1": bn(8), "Scale1": [(rng.random(8) + 0.5).astype(f), rng.standard_normal(8).astype(f) * 0.1],
            "Convolution2": [rng.standard_normal((8, 8, 3, 3)).astype(f) * 0.2, rng.standard_normal(8).astype(f) * 0.1],
            "BatchNorm2": bn(8), "Scale2": [(rng.random(8) + 0.5).astype(f), rng.standard_normal(8).astype(f) * 0.1],
            "InnerProduct1": [rng.standard_normal((4, 8)).astype(f), np.zeros(4, f)]}


@pytest.fixture()
def blob_dump(tmp_path):
    proto = write_model(tmp_path, RESNET_BLOCK, _weights())
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    dump = CaffeModel(proto).run({"data": x})
    out = tmp_path / "blobs"
    out.mkdir()
    for blob, writers in dump.meta["blobs"].items():  # what an NNIE-style tool writes: each blob's final value
        np.save(out / f"{blob}.npy", np.asarray(dump[writers[-1]].load()))
    assert not np.allclose(np.load(out / "Convolution1.npy"), dump["Convolution1"].load())  # post-ReLU vs conv
    return proto, tmp_path / "x.npy", out


def test_clean_blob_named_dump_is_clean(blob_dump, tmp_path, capsys):
    proto, x, out = blob_dump
    code = main(["compare", str(proto), str(out), "--input", str(x), "--json", str(tmp_path / "r.json")])
    capsys.readouterr()
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert all(f["severity"] == "info" for f in data["findings"])
    naming = data["meta"]["naming"]
    assert naming["tensor_names"] == "blob" and naming["source"] == "values" and "ReLU1" in naming["evidence"]
    layer = next(x for x in data["layers"] if x["name"] == "ReLU1")
    assert layer["target_name"] == "Convolution1" and layer["alignment"]["method"] == "blob"
    hidden = next(x for x in data["layers"] if x["name"] == "BatchNorm1")
    assert hidden["status"] == "not_observable"


def test_naming_option_overrides_detection(blob_dump):
    proto, x, out = blob_dump
    forced = netdiff.compare(proto, out, {"data": str(x)}, naming="layer")
    assert forced.failed and forced.meta["naming"]["source"] == "option"  # read by layer: conv vs post-ReLU
    assert not netdiff.compare(proto, out, {"data": str(x)}, naming="blob").failed


def test_layer_named_dump_stays_layer_named(tmp_path):
    proto = write_model(tmp_path, RESNET_BLOCK, _weights())
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    model = CaffeModel(proto)
    out = tmp_path / "layers"
    out.mkdir()
    for t in model.run({"data": x}):
        np.save(out / f"{t.name}.npy", np.asarray(t.load()))
    report = netdiff.compare(model, out, {"data": x})
    assert not report.failed and report.meta["naming"]["tensor_names"] == "layer"


def test_bad_naming_is_a_usage_error(blob_dump, capsys):
    proto, x, out = blob_dump
    assert main(["compare", str(proto), str(out), "--input", str(x), "--naming", "tensor"]) == 2
    assert "blob or layer" in capsys.readouterr().err
