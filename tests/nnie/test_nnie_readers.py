"""NNIE dump readers on files written here from the documented formats (docs/nnie.md)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from netdiff.errors import DumpFormatError
from netdiff.readers import detect_format, read_dump


def write_hex(path, values_q12):
    """One %08x two's-complement int32 per line (what the mapper and the SDK sample write)."""
    path.write_text("".join(f"{int(v) & 0xFFFFFFFF:08x}\n" for v in np.ravel(values_q12)))


def write_float(path, values):
    np.savetxt(path, np.ravel(values).reshape(-1, 1))


@pytest.fixture
def mapper_dir(tmp_path):
    root = tmp_path / "mapper_out" / "mapper_quant"
    root.mkdir(parents=True)
    ints = np.arange(-60, 60, dtype=np.int64).reshape(2, 3, 20) * 1000
    write_hex(root / "conv1_report_output0_2_3_20_quant.linear.hex", ints)
    write_hex(root / "Softmax_43_output0_2_1_1_quant.linear.hex", [4096, 0])
    write_hex(root / "slice1_output1_1_2_2_quant.linear.hex", [1, 2, 3, -4096])
    write_float(root / "conv1_input0_1_4_4_anti_quant.linear.float", np.linspace(0, 1, 16))
    (root / "conv1_input0_1_4_4_quant.nonlinear.hex").write_text("7f\n" * 16)
    (root / "conv1_weight.hex").write_text("01\n")
    return tmp_path / "mapper_out", ints


def test_mapper_reader(mapper_dir):
    path, ints = mapper_dir
    assert detect_format(path) == "nnie-mapper"
    dump = read_dump(path, cfg=None)
    assert dump.meta["tensor_names"] == "blob" and dump.meta["name_limit"] == 31
    conv = dump["conv1"]
    assert conv.meta["raw_name"] == "conv1_report"
    assert conv.shape == (1, 2, 3, 20) and conv.layout == "NCHW" and conv.dtype == "float32"
    np.testing.assert_allclose(conv.load().ravel(), ints.ravel() / 4096, rtol=0, atol=0)
    assert dump["Softmax_43"].load().ravel().tolist() == [1.0, 0.0]
    second = dump["slice1_output1"]
    assert second.origin_names == ("slice1",) and second.meta["origin_output_index"] == 1
    assert second.load().ravel()[-1] == -1.0
    assert "conv1:input0" in dump.target_only
    np.testing.assert_allclose(dump["conv1:input0"].load().ravel(), np.linspace(0, 1, 16), rtol=1e-6)
    assert "conv1:input0" not in read_dump(path, inputs="false")


def test_mapper_hex_is_signed_32_bit(tmp_path):
    write_hex(tmp_path / "a_output0_4_quant.linear.hex", [-1, -(2**31), 2**31 - 1, 4096])
    values = read_dump(tmp_path)["a"].load().ravel()
    assert values.tolist() == pytest.approx([-1 / 4096, -(2**31) / 4096, (2**31 - 1) / 4096, 1.0])


@pytest.mark.parametrize("content,message", [
    ("zz\n" * 4, "not a 32-bit hex word"),
    ("123456789\n" * 4, "not a 32-bit hex word"),
    ("00000001\n" * 3, "not a multiple"),
    ("", "holds 0 values"),
])
def test_mapper_malformed(tmp_path, content, message):
    (tmp_path / "a_output0_4_quant.linear.hex").write_text(content)
    with pytest.raises(DumpFormatError, match=message) as err:
        read_dump(tmp_path, format="nnie-mapper")["a"].load()
    assert "\n" not in str(err.value)
    assert "a_output0_4_quant.linear.hex" in str(err.value)


def test_mapper_binary_garbage(tmp_path):
    (tmp_path / "a_output0_2_quant.linear.hex").write_bytes(b"\xff\xfe\x00\x01\n\x80\x90\n")
    with pytest.raises(DumpFormatError, match="not a text dump"):
        read_dump(tmp_path, format="nnie-mapper")["a"].load()


def test_caffe_reference_reader(tmp_path):
    blob = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    for n in range(2):  # the script writes the whole blob once per batch index
        write_float(tmp_path / f"conv1_output{n}_3_4_5_caffe.linear.float", blob)
    write_float(tmp_path / "fc_output0_10_caffe.linear.float", np.arange(10))
    assert detect_format(tmp_path) == "nnie-caffe"
    dump = read_dump(tmp_path)
    assert sorted(dump.names) == ["conv1", "fc"]
    assert dump["conv1"].shape == (2, 3, 4, 5)
    np.testing.assert_allclose(dump["conv1"].load(), blob, rtol=1e-6)
    assert dump["fc"].shape == (1, 10)


def test_caffe_reader_rejects_text(tmp_path):
    (tmp_path / "x_output0_2_caffe.linear.float").write_text("1.0\nnan-ish\n")
    with pytest.raises(DumpFormatError, match="value #2 'nan-ish' is not a number"):
        read_dump(tmp_path)["x"].load()


@pytest.fixture
def sim_dir(tmp_path):
    root = tmp_path / "inst_layer_output_linear"
    root.mkdir()
    write_hex(root / "seg0_layer1_output0_inst.linear.hex", np.arange(6) * 4096)
    write_hex(root / "seg0_layer3_output0_inst.linear.hex", [-8192, 2048])
    write_hex(root / "seg1_layer0_output0_inst.linear.hex", [409600])
    return tmp_path


def test_sim_reader_by_order(sim_dir):
    assert detect_format(sim_dir) == "nnie-sim"
    dump = read_dump(sim_dir)
    assert dump.names == ["seg0_layer1", "seg0_layer3", "seg1_layer0"]
    assert [t.order for t in dump] == [0, 1, 2]
    assert dump["seg0_layer3"].load().tolist() == [-2.0, 0.5]
    assert dump["seg1_layer0"].load().tolist() == [100.0]
    assert dump.meta["tensor_names"] == "blob"


def test_sim_reader_with_net_tree(sim_dir, tmp_path):
    dot = tmp_path / "cnn_net_tree.dot"
    dot.write_text('digraph G {\n  layer1 [label="name: conv1_report\\nlayer_id: 1\\nseg: 0"];\n'
                   '  layer3 [label="name: fc\\nlayer_id: 3"];\n  layer1 -> layer3;\n}\n')
    dump = read_dump(sim_dir, net_tree=str(dot))
    assert dump.names == ["conv1", "fc", "seg1_layer0"]
    assert dump["conv1"].meta["raw_name"] == "conv1_report"
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"seg0_layer1": {"name": "conv1", "shape": [1, 2, 3]}, "3": "fc", "0": "prob"}))
    dump = read_dump(sim_dir, net_tree=str(mapping))
    assert dump.names == ["conv1", "fc", "prob"]
    assert dump["conv1"].shape == (1, 1, 2, 3) and dump["conv1"].load().shape == (1, 1, 2, 3)


def test_sim_reader_inst_and_func(sim_dir):
    root = sim_dir / "inst_layer_output_linear"
    write_hex(root / "seg0_layer1_output0_func.linear.hex", [1])
    with pytest.raises(DumpFormatError, match="both inst and func"):
        read_dump(sim_dir)
    assert read_dump(sim_dir, kind="func").names == ["seg0_layer1"]


def write_blob(path, ints, stride_bytes):
    n, c, h, w = ints.shape
    with open(path, "wb") as f:
        for row in ints.reshape(-1, w):
            f.write(struct.pack(f"<{w}i", *row.tolist()))
            f.write(b"\xAA" * (stride_bytes - 4 * w))  # padding garbage


def test_blob_reader_strips_padding(tmp_path):
    ints = np.random.default_rng(1).integers(-50000, 50000, size=(1, 3, 5, 13))
    path = tmp_path / "prob.s32"
    write_blob(path, ints, 64)  # ALIGN16(13*4) = 64
    assert detect_format(path) == "nnie-blob"
    dump = read_dump(path, shape="3,5,13")
    t = dump["prob"]
    assert t.shape == (1, 3, 5, 13)
    np.testing.assert_allclose(t.load(), ints / 4096, rtol=0, atol=0)
    raw = read_dump(path, shape="3,5,13", q12="false")["prob"].load()
    np.testing.assert_array_equal(raw, ints.astype(np.float32))
    wide = tmp_path / "wide.bin"
    write_blob(wide, ints, 256)
    np.testing.assert_allclose(read_dump(wide, format="nnie-blob", shape=(3, 5, 13), stride=256, name="out")["out"].load(),
                               ints / 4096)


def test_blob_reader_float_and_batch(tmp_path):
    values = np.arange(2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4) / 7
    path = tmp_path / "x.s32"
    path.write_bytes(values.astype("<f4").tobytes())  # W=4 -> 16 bytes, no padding
    t = read_dump(path, shape="2,2,4", dtype="f32")["x"]
    assert t.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(t.load(), values)


@pytest.mark.parametrize("options,message", [
    ({}, "give its shape"),
    ({"shape": "3,5,12"}, "does not fit shape"),
    ({"shape": "3,5,13", "stride": 48}, "cannot hold a row"),
    ({"shape": "a,b"}, "must look like C,H,W"),
    ({"shape": "3,5,13", "dtype": "u8"}, "dtype must be"),
])
def test_blob_reader_errors(tmp_path, options, message):
    path = tmp_path / "prob.s32"
    write_blob(path, np.zeros((1, 3, 5, 13), dtype=np.int64), 64)
    with pytest.raises(DumpFormatError, match=message) as err:
        read_dump(path, **options)
    assert "\n" not in str(err.value)


def test_blob_reader_hints_unpadded(tmp_path):
    path = tmp_path / "prob.s32"
    path.write_bytes(np.zeros(3 * 5 * 13, "<i4").tobytes())
    with pytest.raises(DumpFormatError, match="pass stride=52"):
        read_dump(path, shape="3,5,13")
