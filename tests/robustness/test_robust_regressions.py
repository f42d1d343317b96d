"""Regression tests for the crashes the fuzzer found (each was a non-NetdiffError exception before)."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest

from netdiff._io import load_npy, npy_header
from netdiff.errors import DumpFormatError, ModelError
from netdiff.readers import read_dump

from robust_seeds import PROTOTXT, seed_ascend, seed_msit, seed_nnie_mapper, seed_npz_compressed, seed_polygraphy


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_npy_header_cut_inside_the_dict_is_a_format_error(tmp_path):
    data = _npy_bytes(np.ones((2, 3), np.float32))
    end = data.index(b"}")
    (tmp_path / "a.npy").write_bytes(data[:end - 3] + b" " * 3 + data[end + 1:])  # "{'descr': ..., 'shape': (2,"
    with pytest.raises(DumpFormatError, match="a.npy: not a readable .npy file"):
        npy_header(tmp_path / "a.npy")  # was tokenize.TokenError
    np.save(tmp_path / "b.npy", np.zeros(3))
    dump = read_dump(tmp_path, "npy-dir")
    assert dump["a"].error and dump["b"].error is None


@pytest.mark.parametrize("shape", [b"(-4,)", b"(-1, -8)", b"(1 << 3,)"])
def test_negative_or_non_literal_npy_shape(tmp_path, shape):
    data = _npy_bytes(np.ones(4, np.float32)).replace(b"(4,)", shape.ljust(4))
    (tmp_path / "a.npy").write_bytes(data)
    with pytest.raises(DumpFormatError, match="a.npy"):
        load_npy(tmp_path / "a.npy")  # negative dims reached mmap (OverflowError) before


def test_zero_dim_in_nnie_file_name_is_one_unreadable_tensor(tmp_path):
    seed = seed_nnie_mapper(tmp_path)
    d = seed.path / "mapper_quant"
    (d / "prob_output1_2_1_1_quant.linear.hex").rename(d / "prob_output1_2_1_0_quant.linear.hex")
    dump = read_dump(seed.path, "nnie-mapper")  # was ZeroDivisionError
    assert "zero dimension" in dump["prob_output1"].error
    assert dump["conv1"].load().shape == (1, 3, 4, 4)


def test_corrupt_deflate_stream_in_npz(tmp_path):
    seed = seed_npz_compressed(tmp_path)
    data = bytearray(seed.path.read_bytes())
    with zipfile.ZipFile(seed.path) as z:
        info = z.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 20, start + 40):
        data[i] ^= 0x5A
    seed.path.write_bytes(bytes(data))
    with pytest.raises(DumpFormatError, match="dumpc.npz"):  # was zlib.error
        for t in read_dump(seed.path, "npz"):
            t.load()


def test_ascend_shape_with_zero_and_huge_dims_is_unreadable(tmp_path):
    import ascend_dump_writer as w

    seed = seed_ascend(tmp_path)
    target = next(p for p in seed.path.rglob("Relu.*"))
    spec = w.DumpSpec("relu/1", outputs=[w.Spec(b"", w.DT["float32"], w.FMT["ND"], (1 << 62, 0))])
    target.write_bytes(w.file_bytes(spec))
    dump = read_dump(seed.path, "ascend")  # was ValueError: Maximum allowed dimension exceeded
    assert "absurd shape" in dump["relu/1"].error
    assert dump["conv1"].load().shape == (1, 3, 4, 4)


def test_ascend_single_broken_file_keeps_the_rest(tmp_path):
    seed = seed_ascend(tmp_path)
    target = next(p for p in seed.path.rglob("Relu.*"))
    target.write_bytes(target.read_bytes()[:-7])
    dump = read_dump(seed.path, "ascend")
    assert "truncated Ascend dump" in dump["relu_1"].error  # header unreadable: named by its file name
    assert dump["fc"].load().shape == (1, 10)


def test_polygraphy_payload_of_only_the_magic(tmp_path):
    seed = seed_polygraphy(tmp_path)
    doc = json.loads(seed.path.read_text())
    outputs = doc["lst"][0][1][0]["outputs"]
    outputs["fc"]["values"]["array"] = base64.b64encode(b"\x93NUMPY").decode() + "A" * 300
    seed.path.write_text(json.dumps(doc))
    dump = read_dump(seed.path, "polygraphy")  # was IndexError
    assert dump["fc"].error and dump["input"].error is None


def test_polygraphy_npz_payload_with_a_lying_header_is_refused_before_allocating(tmp_path):
    seed = seed_polygraphy(tmp_path)
    huge = _npy_bytes(np.ones(4, np.float32)).replace(b"'shape': (4,), ", b"'shape': (99999999999,), ")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", huge)
    doc = json.loads(seed.path.read_text())
    doc["lst"][0][1][0]["outputs"]["fc"] = {"array": buf.getvalue().decode("latin-1")}
    seed.path.write_text(json.dumps(doc))
    dump = read_dump(seed.path, "polygraphy")
    assert "fc" in dump and dump["fc"].error and "truncated" in dump["fc"].error


def test_msit_manifest_with_infinite_shape_value(tmp_path):
    from robust_seeds import seed_netdiff

    seed = seed_netdiff(tmp_path)
    manifest = seed.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"shape": [\n    1,', '"shape": [\n    1e999,', 1))
    with pytest.raises(DumpFormatError, match="1e999 is out of range"):  # was OverflowError
        read_dump(seed.path, "netdiff")


def test_msit_one_truncated_file(tmp_path):
    seed = seed_msit(tmp_path)
    victim = next(seed.path.glob("relu_1.*.npy"))
    victim.write_bytes(victim.read_bytes()[:-5])
    dump = read_dump(seed.path, "msit")
    assert "truncated" in dump["relu_1"].error and dump["fc"].error is None


def test_caffemodel_blob_with_empty_shape_and_no_data(tmp_path):
    import caffe_testkit as k

    from netdiff.caffe.proto import parse_caffemodel

    empty = k.ld(7, b"")  # BlobShape with no dims, no data: was "cannot reshape array of size 0 into shape ()"
    net = parse_caffemodel(k.netparam([k.string(1, "conv1") + k.string(2, "Convolution") + k.ld(7, empty)]))
    assert net.layers[0].blobs[0].array.shape == (0,)
    wraps = k.ld(7, k.ld(1, k.varint(1 << 32) + k.varint(1 << 32)))  # int64 product wraps to 0
    with pytest.raises(ModelError, match="needs 18446744073709551616 values"):
        parse_caffemodel(k.netparam([k.string(1, "c") + k.string(2, "Convolution") + k.ld(7, wraps)]))


@pytest.mark.parametrize("old, new", [("kernel_size: 3", "kernel_size: ffffffff"),
                                      ('layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }',
                                       'layer { name: "prob" type: "Softmax" top: "prob" }')])
def test_malformed_layer_parameters_are_a_model_error(tmp_path, old, new):
    from netdiff.caffe.net import load_net
    from netdiff.caffe.to_onnx import infer_shapes

    (tmp_path / "net.prototxt").write_text(PROTOTXT.replace(old, new))
    net = load_net(tmp_path / "net.prototxt", shapes=False)
    with pytest.raises(ModelError, match=r"net.prototxt: layer '(conv1|prob)'"):
        infer_shapes(net)  # was ValueError / IndexError from the layer translators

