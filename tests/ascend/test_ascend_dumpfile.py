"""Ascend dump files: exact round trips through an independent writer, device formats, bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import ascend_dump_writer as w
from netdiff.ascend.dumpfile import read_header
from netdiff.errors import DumpFormatError
from netdiff.readers import detect_format, read_dump

RNG = np.random.default_rng(7)


def _write_one(tmp_path, spec, op_type="Add", variant="binary", ts=None):
    d = w.dump_dir(tmp_path)
    return w.write(d, op_type, spec, ts=ts, variant=variant)


PLAIN_CASES = [
    ("float32", np.float32), ("float16", np.float16), ("int8", np.int8), ("uint8", np.uint8), ("int16", np.int16),
    ("uint16", np.uint16), ("int32", np.int32), ("int64", np.int64), ("uint32", np.uint32), ("uint64", np.uint64),
    ("bool", np.bool_), ("float64", np.float64), ("complex64", np.complex64), ("complex128", np.complex128),
]


@pytest.mark.parametrize("variant", ["binary", "protobuf", "nano"])
@pytest.mark.parametrize("dtype_name,np_dtype", PLAIN_CASES)
def test_plain_dtypes_round_trip_exactly(tmp_path, variant, dtype_name, np_dtype):
    if np_dtype is np.bool_:
        x = RNG.random((2, 3, 5)) > 0.5
    elif np.issubdtype(np_dtype, np.complexfloating):
        x = (RNG.standard_normal((2, 3, 5)) + 1j * RNG.standard_normal((2, 3, 5))).astype(np_dtype)
    elif np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        x = RNG.integers(info.min, info.max, (2, 3, 5), dtype=np_dtype, endpoint=True)
    else:
        x = (RNG.standard_normal((2, 3, 5)) * 100).astype(np_dtype)
    spec = w.DumpSpec("block/add.1", outputs=[w.Spec(x.tobytes(), w.DT[dtype_name], w.FMT["ND"], x.shape)])
    _write_one(tmp_path, spec, variant=variant)
    dump = read_dump(tmp_path)
    # a nano head has no op name: the op is named by its (escaped) file name
    t = dump["block/add.1" if variant != "nano" else w.escape("block/add.1")]
    got = t.load()
    assert t.dtype == np.dtype(np_dtype).name and t.shape == x.shape and t.layout == "ND"
    assert got.dtype == x.dtype and np.array_equal(got, x)
    assert t.meta["dump_variant"] == variant


def test_bfloat16_decodes_to_float32(tmp_path):
    x = np.array([[1.0, -2.5, 3.14159, 1e-40], [65504.0, -1e30, np.inf, 0.0]], np.float32)
    bits = w.bf16_bits(x)
    spec = w.DumpSpec("mm", outputs=[w.Spec(bits.tobytes(), w.DT["bf16"], w.FMT["ND"], x.shape)])
    _write_one(tmp_path, spec, op_type="MatMul")
    t = read_dump(tmp_path)["mm"]
    got = t.load()
    assert t.dtype == "float32" and got.dtype == np.float32
    np.testing.assert_array_equal(got, w.bf16_value(bits))
    np.testing.assert_allclose(got[0, :3], x[0, :3], rtol=1 / 128)


def test_fp8_and_uint1(tmp_path):
    d = w.dump_dir(tmp_path)
    codes = np.arange(256, dtype=np.uint8)
    w.write(d, "Cast", w.DumpSpec("e5m2", outputs=[w.Spec(codes.tobytes(), w.DT["fp8_e5m2"], w.FMT["ND"], (256,))]))
    w.write(d, "Cast", w.DumpSpec("e4m3", outputs=[w.Spec(codes.tobytes(), w.DT["fp8_e4m3fn"], w.FMT["ND"], (256,))]))
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1], np.uint8)
    w.write(d, "Mask", w.DumpSpec("mask", outputs=[w.Spec(np.packbits(bits).tobytes(), w.DT["uint1"], w.FMT["ND"], (10,))]))
    dump = read_dump(tmp_path)
    e5 = dump["e5m2"].load()
    assert e5[0x3C] == 1.0 and e5[0xC0] == -2.0 and np.isinf(e5[0x7C]) and np.isnan(e5[0x7E])
    e4 = dump["e4m3"].load()
    assert e4[0x38] == 1.0 and e4[0x7E] == 448.0 and e4[0x01] == 2.0 ** -9 and np.isnan(e4[0x7F]) and e4[0xB8] == -1.0
    np.testing.assert_array_equal(dump["mask"].load(), bits)


@pytest.mark.parametrize("channels,dtype,c0", [(20, "float16", 16), (3, "float32", 16), (40, "int8", 32), (33, "uint8", 32)])
def test_nc1hwc0_to_nchw_strips_padding(tmp_path, channels, dtype, c0):
    x = (RNG.standard_normal((2, channels, 5, 7)) * 50).astype(dtype)
    dev = w.to_nc1hwc0(x, c0)
    spec = w.DumpSpec("conv1/Conv", outputs=[w.Spec(dev.tobytes(), w.DT[dtype], w.FMT["NC1HWC0"], dev.shape, x.shape)])
    _write_one(tmp_path, spec, op_type="Conv2D")
    t = read_dump(tmp_path)["conv1/Conv"]
    assert t.shape == x.shape and t.layout == "NCHW" and t.meta["device_shape"] == list(dev.shape)
    np.testing.assert_array_equal(t.load(), x)


def test_nc1hwc0_with_nhwc_original_shape(tmp_path):
    x = RNG.standard_normal((1, 4, 6, 10)).astype(np.float16)  # NHWC, C=10
    nchw = x.transpose(0, 3, 1, 2)
    dev = w.to_nc1hwc0(nchw, 16)
    spec = w.DumpSpec("nhwc_op", outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], dev.shape, x.shape)])
    _write_one(tmp_path, spec)
    t = read_dump(tmp_path)["nhwc_op"]
    assert t.layout == "NHWC" and t.shape == x.shape
    np.testing.assert_array_equal(t.load(), x)


def test_nc1hwc0_c04_and_no_original_shape_keeps_padding(tmp_path):
    d = w.dump_dir(tmp_path)
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float16)
    dev = w.to_nc1hwc0(x, 4)
    w.write(d, "Conv2D", w.DumpSpec("c04", outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["NC1HWC0_C04"], dev.shape, x.shape)]))
    dev16 = w.to_nc1hwc0(x, 16)
    w.write(d, "Conv2D", w.DumpSpec("noshape", outputs=[w.Spec(dev16.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], dev16.shape)]))
    dump = read_dump(tmp_path)
    np.testing.assert_array_equal(dump["c04"].load(), x)
    padded = dump["noshape"]
    assert padded.shape == (1, 16, 4, 4) and "padding kept" in padded.meta["note"]
    np.testing.assert_array_equal(padded.load()[:, :3], x)
    assert not padded.load()[:, 3:].any()


def test_fractal_z_weights(tmp_path):
    wt = RNG.standard_normal((20, 18, 3, 3)).astype(np.float16)  # N=20 (No=2), C=18 (C1=2)
    dev = w.to_fractal_z(wt)
    spec = w.DumpSpec("conv2", inputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["FRACTAL_Z"], dev.shape, wt.shape)],
                      outputs=[w.Spec(b"\0\0", w.DT["float16"], w.FMT["ND"], (1,))])
    _write_one(tmp_path, spec, op_type="Conv2D")
    t = read_dump(tmp_path)["conv2:input:0"]
    assert t.shape == wt.shape and t.layout == "NCHW" and t.meta["direction"] == "input"
    np.testing.assert_array_equal(t.load(), wt)


@pytest.mark.parametrize("shape", [(30, 70), (3, 17, 33), (2, 2, 16, 16), (5,)])
def test_fractal_nz_to_nd(tmp_path, shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    x2 = x.reshape(1, -1) if len(shape) == 1 else x
    dev = w.to_fractal_nz(x2)
    spec = w.DumpSpec("fc/MatMul", outputs=[w.Spec(dev.tobytes(), w.DT["float32"], w.FMT["FRACTAL_NZ"], dev.shape, shape)])
    _write_one(tmp_path, spec, op_type="MatMulV2")
    t = read_dump(tmp_path)["fc/MatMul"]
    assert t.shape == shape and t.layout == "ND"
    np.testing.assert_array_equal(t.load(), x)


def test_fractal_nz_without_original_shape_is_kept_raw(tmp_path):
    dev = w.to_fractal_nz(RNG.standard_normal((20, 20)).astype(np.float16))
    _write_one(tmp_path, w.DumpSpec("nz", outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["FRACTAL_NZ"], dev.shape)]))
    t = read_dump(tmp_path)["nz"]
    assert t.shape == dev.shape and t.layout == "FRACTAL_NZ" and "needs it" in t.meta["note"]
    np.testing.assert_array_equal(t.load(), dev)


def test_ndc1hwc0_to_ncdhw(tmp_path):
    x = RNG.standard_normal((1, 19, 2, 3, 4)).astype(np.float16)
    dev = w.to_ndc1hwc0(x)
    _write_one(tmp_path, w.DumpSpec("conv3d", outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["NDC1HWC0"], dev.shape, x.shape)]))
    t = read_dump(tmp_path)["conv3d"]
    assert t.shape == x.shape and t.layout == "NCDHW"
    np.testing.assert_array_equal(t.load(), x)


def test_nhwc_and_unpacked_shapes(tmp_path):
    x = RNG.standard_normal((1, 3, 4, 5)).astype(np.float32)
    spec = w.DumpSpec("pool", outputs=[w.Spec(x.tobytes(), w.DT["float32"], w.FMT["NHWC"], x.shape)])
    d = w.dump_dir(tmp_path)
    (d / "MaxPool.pool.1.1.1690000000000001").write_bytes(w.file_bytes(spec, packed=False))
    t = read_dump(tmp_path)["pool"]
    assert t.layout == "NHWC" and t.shape == x.shape
    np.testing.assert_array_equal(t.load(), x)


def test_outputs_inputs_naming_and_target_only(tmp_path):
    a, b = RNG.standard_normal((2, 3)).astype(np.float32), RNG.standard_normal((4,)).astype(np.float32)
    i0 = RNG.standard_normal((2, 3)).astype(np.float32)
    spec = w.DumpSpec("split/op", outputs=[w.Spec(a.tobytes(), 1, 2, a.shape), w.Spec(b.tobytes(), 1, 2, b.shape)],
                      inputs=[w.Spec(i0.tobytes(), 1, 2, i0.shape)],
                      buffers=[w.Spec(b"\x01" * 12, 0)])
    _write_one(tmp_path, spec, op_type="SplitD")
    dump = read_dump(tmp_path)
    assert dump.names == ["split/op", "split/op:1", "split/op:input:0"]
    assert dump.target_only == ["split/op:input:0"]
    np.testing.assert_array_equal(dump["split/op:1"].load(), b)
    np.testing.assert_array_equal(dump["split/op:input:0"].load(), i0)
    assert dump["split/op:input:0"].meta["direction"] == "input"
    assert dump.meta["format_name"] == "Ascend" and dump.meta["precision_mode"] == "force_fp16"
    assert "default" in dump.meta["precision_mode_source"].lower()


def test_header_offsets_account_for_inputs_before_outputs(tmp_path):
    i0 = np.arange(6, dtype=np.int32)
    o0 = np.arange(100, 110, dtype=np.int64)
    spec = w.DumpSpec("op", outputs=[w.Spec(o0.tobytes(), w.DT["int64"], 2, o0.shape)],
                      inputs=[w.Spec(i0.tobytes(), w.DT["int32"], 2, i0.shape)])
    path = _write_one(tmp_path, spec)
    header = read_header(path)
    assert header.variant == "binary" and header.op_name == "op"
    assert header.outputs[0].offset == header.inputs[0].offset + i0.nbytes
    assert path.stat().st_size == header.outputs[0].offset + o0.nbytes


def test_last_file_by_timestamp_wins_and_data_index(tmp_path):
    for index, ts, value in [(0, 1690000000000005, 1.0), (1, 1690000000000009, 2.0), (1, 1690000000000007, 3.0)]:
        x = np.full((4,), value, np.float32)
        w.write(w.dump_dir(tmp_path, index=index), "Relu", w.DumpSpec("relu", outputs=[w.Spec(x.tobytes(), 1, 2, x.shape)]), ts=ts)
    dump = read_dump(tmp_path)
    assert dump["relu"].load()[0] == 2.0 and dump["relu"].meta["files_for_op"] == 3
    assert read_dump(tmp_path, data_index=0)["relu"].load()[0] == 1.0
    with pytest.raises(DumpFormatError, match="data index 5"):
        read_dump(tmp_path, format="ascend", data_index=5)


def test_several_models_need_a_choice(tmp_path):
    x = np.ones(3, np.float32)
    for model in ("net_a", "net_b"):
        w.write(w.dump_dir(tmp_path, model=model), "Relu", w.DumpSpec(f"r_{model}", outputs=[w.Spec(x.tobytes(), 1, 2, (3,))]))
    with pytest.raises(DumpFormatError, match="net_a, net_b"):
        read_dump(tmp_path, format="ascend")
    assert read_dump(tmp_path, format="ascend", model="net_b").names == ["r_net_b"]


def test_long_names_through_mapping_csv(tmp_path):
    long_name = "backbone/" + "very_long_block_name/" * 14 + "conv"
    x = RNG.standard_normal((3,)).astype(np.float32)
    spec = w.DumpSpec(long_name, outputs=[w.Spec(x.tobytes(), 1, 2, x.shape)])
    d = w.dump_dir(tmp_path)
    (d / "1234567").write_bytes(w.file_bytes(spec))
    (d / "mapping.csv").write_text(f"1234567,Conv2D.{w.escape(long_name)}.3.1.1690000000000000\n")
    dump = read_dump(tmp_path)
    assert dump.names == [long_name]
    np.testing.assert_array_equal(dump[long_name].load(), x)


def test_escaped_name_kept_when_header_has_no_op_name(tmp_path):
    x = np.ones(2, np.float32)
    spec = w.DumpSpec("", outputs=[w.Spec(x.tobytes(), 1, 2, (2,))])
    d = w.dump_dir(tmp_path)
    (d / "Add.layer1_add_0.3.1.1690000000000000").write_bytes(w.file_bytes(spec))
    assert read_dump(tmp_path).names == ["layer1_add_0"]


def test_data_is_read_lazily(tmp_path):
    x = np.zeros((8,), np.float32)
    path = _write_one(tmp_path, w.DumpSpec("lazy", outputs=[w.Spec(x.tobytes(), 1, 2, x.shape)]))
    dump = read_dump(tmp_path)
    data = bytearray(path.read_bytes())
    data[-4:] = np.float32(7.5).tobytes()
    path.write_bytes(bytes(data))
    assert dump["lazy"].load()[-1] == 7.5


def test_sniffing(tmp_path):
    x = np.ones(2, np.float32)
    _write_one(tmp_path, w.DumpSpec("a", outputs=[w.Spec(x.tobytes(), 1, 2, (2,))]))
    assert detect_format(tmp_path) == "ascend"
    other = tmp_path / "other"
    other.mkdir()
    (other / "Add.not_a_dump.1.1.1690000000000000").write_bytes(b"\xff" * 64)
    with pytest.raises(DumpFormatError):
        detect_format(other)


# ------------------------------------------------------------------ corrupt files

def _good_bytes():
    x = RNG.standard_normal((4, 4)).astype(np.float32)
    return w.file_bytes(w.DumpSpec("bad", outputs=[w.Spec(x.tobytes(), 1, 2, x.shape)]))


def _write_raw(tmp_path, data):
    d = w.dump_dir(tmp_path)
    path = d / "Add.bad.1.1.1690000000000000"
    path.write_bytes(data)
    return path


def test_truncated_file(tmp_path):
    path = _write_raw(tmp_path, _good_bytes()[:-10])
    with pytest.raises(DumpFormatError, match="truncated") as e:
        read_dump(tmp_path, format="ascend")
    assert str(path) in str(e.value)


def test_trailing_data(tmp_path):
    _write_raw(tmp_path, _good_bytes() + b"\0" * 3)
    with pytest.raises(DumpFormatError, match="trailing"):
        read_dump(tmp_path, format="ascend")


def test_oversized_header_length(tmp_path):
    data = _good_bytes()
    _write_raw(tmp_path, struct.pack("<Q", 1 << 60) + data[8:])
    with pytest.raises(DumpFormatError, match="exceeds the file size"):
        read_dump(tmp_path, format="ascend")


def test_corrupt_header(tmp_path):
    data = bytearray(_good_bytes())
    data[8:16] = b"\xff" * 8  # a varint that never ends inside the header
    _write_raw(tmp_path, bytes(data))
    with pytest.raises(DumpFormatError, match="not valid protobuf"):
        read_dump(tmp_path, format="ascend")


def test_too_short(tmp_path):
    _write_raw(tmp_path, b"\x01\x02")
    with pytest.raises(DumpFormatError, match="too short"):
        read_dump(tmp_path, format="ascend")


def test_shape_larger_than_stored_size(tmp_path):
    x = np.ones(4, np.float32)
    spec = w.DumpSpec("bad", outputs=[w.Spec(x.tobytes(), 1, 2, (100, 100))])
    _write_raw(tmp_path, w.file_bytes(spec))
    with pytest.raises(DumpFormatError, match="needs 40000 bytes but only 16"):
        read_dump(tmp_path, format="ascend")


def test_no_dump_files(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DumpFormatError, match="no Ascend dump files"):
        read_dump(tmp_path, format="ascend")


def test_text_files_with_dump_like_names_are_not_sniffed(tmp_path):
    d = w.dump_dir(tmp_path)
    (d / "Add.layer.1.1.1690000000000000").write_text("2 lines of text that happen to start with a digit\n")
    with pytest.raises(DumpFormatError):
        detect_format(tmp_path)


def test_device_address_and_offset_fields_are_ignored(tmp_path):
    """Real device dumps set OpOutput.address (9) / offset (11) and OpInput.address (8) / offset (9)."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = x * 2
    out = w.Spec(data=y.tobytes(), data_type=w.DT["float32"], shape=(2, 3))
    inp = w.Spec(data=x.tobytes(), data_type=w.DT["float32"], shape=(2, 3))
    header = (w.f_varint(2, 1690000000000000)
              + w.f_bytes(3, w._output_msg(out, False, True) + w.f_varint(9, 0x12C0000000) + w.f_varint(11, 64))
              + w.f_bytes(4, w._input_msg(inp, False, True) + w.f_varint(8, 0x12C0001000) + w.f_varint(9, 32))
              + w.f_bytes(6, b"Mul_1"))
    path = tmp_path / "Mul.Mul_1.2.1.1690000000000000"
    path.write_bytes(struct.pack("<Q", len(header)) + header + x.tobytes() + y.tobytes())
    record = read_header(path)
    assert record.op_name == "Mul_1" and record.outputs[0].shape == (2, 3)
    dump = read_dump(tmp_path, format="ascend")
    assert np.array_equal(dump["Mul_1"].load(), y)


def test_nano_dump_nc1hwc0_inputs_outputs_and_origin_name(tmp_path):
    """Atlas nano devices write a TLV head: same tensors, GE data type codes, origin names in the head."""
    x = (RNG.standard_normal((1, 20, 5, 7)) * 10).astype(np.float16)
    dev = w.to_nc1hwc0(x, 16)
    i0 = RNG.standard_normal((1, 3, 5, 7)).astype(np.float32)
    spec = w.DumpSpec("", outputs=[w.Spec(dev.tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], dev.shape, x.shape,
                                          original_op=("/conv1/Conv", 0))],
                      inputs=[w.Spec(i0.tobytes(), w.DT["float32"], w.FMT["NCHW"], i0.shape)])
    d = w.dump_dir(tmp_path)
    path = d / "Conv2D.conv1_Conv.3.1.1690000000000000"
    path.write_bytes(w.file_bytes(spec, "nano"))
    header = read_header(path)
    assert header.variant == "nano" and header.version == "1"
    assert header.outputs[0].original_op == ("/conv1/Conv", 0) and header.outputs[0].original_shape == x.shape
    assert header.outputs[0].offset == header.inputs[0].offset + i0.nbytes
    assert detect_format(tmp_path) == "ascend"
    dump = read_dump(tmp_path)
    t = dump["conv1_Conv"]
    assert t.shape == x.shape and t.layout == "NCHW" and t.meta["dump_variant"] == "nano"
    assert t.meta["original_op"] == ["/conv1/Conv", 0]
    np.testing.assert_array_equal(t.load(), x)
    np.testing.assert_array_equal(dump["conv1_Conv:input:0"].load(), i0)


@pytest.mark.parametrize("cut", [1, 100])
def test_nano_dump_truncated_is_one_unreadable_op(tmp_path, cut):
    x = np.arange(64, dtype=np.float32)
    good = w.DumpSpec("", outputs=[w.Spec(x.tobytes(), w.DT["float32"], w.FMT["ND"], x.shape)])
    d = w.dump_dir(tmp_path)
    (d / "Relu.ok.1.1.1690000000000000").write_bytes(w.file_bytes(good, "nano"))
    (d / "Relu.cut.1.1.1690000000000001").write_bytes(w.file_bytes(good, "nano")[:-cut])
    dump = read_dump(tmp_path)
    np.testing.assert_array_equal(dump["ok"].load(), x)
    with pytest.raises(DumpFormatError, match="truncated nano dump"):
        dump["cut"].load()
