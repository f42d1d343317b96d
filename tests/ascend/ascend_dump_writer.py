"""Test-only writer of Ascend dump files, written from the format description (not from the reader).

It encodes the ``toolkit.dumpdata.DumpData`` protobuf by hand and lays tensors out in device
formats with element-wise index formulas (the reader uses reshape/transpose), so a round trip
checks the reader against an independent implementation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pbwrite import key, length_delimited, varint  # noqa: F401  (varint/key are used by tests)

# OutputDataType codes (dump_data.proto)
DT = {"float32": 1, "float16": 2, "int8": 3, "uint8": 4, "int16": 5, "uint16": 6, "int32": 7, "int64": 8,
      "uint32": 9, "uint64": 10, "bool": 11, "float64": 12, "complex64": 16, "complex128": 17, "bf16": 27,
      "uint1": 29, "fp8_e5m2": 34, "fp8_e4m3fn": 35}
# OutputFormat codes
FMT = {"NCHW": 0, "NHWC": 1, "ND": 2, "NC1HWC0": 3, "FRACTAL_Z": 4, "NC1HWC0_C04": 12, "HWCN": 16,
       "FRACTAL_NZ": 29, "NCDHW": 30, "NDC1HWC0": 32}


def f_varint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def f_bytes(number: int, payload: bytes) -> bytes:
    return length_delimited(number, payload)


def shape_msg(dims, packed: bool = True) -> bytes:
    if packed:
        return f_bytes(1, b"".join(varint(d) for d in dims)) if dims else b""
    return b"".join(f_varint(1, d) for d in dims)


@dataclass
class Spec:
    """One tensor to write: raw device bytes plus header fields."""

    data: bytes
    data_type: int
    format: int = FMT["ND"]
    shape: tuple = ()
    original_shape: tuple = ()
    sub_format: int = 0
    original_op: tuple | None = None
    size: int | None = None  # override the declared size (for corruption tests)


@dataclass
class DumpSpec:
    op_name: str
    outputs: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    version: str = ""
    dump_time: int = 1690000000000000


def _output_msg(s: Spec, inline: bool, packed: bool) -> bytes:
    out = f_varint(1, s.data_type) + f_varint(2, s.format) + f_bytes(3, shape_msg(s.shape, packed))
    if s.original_op:
        out += f_bytes(4, f_bytes(1, s.original_op[0].encode()) + f_varint(2, s.original_op[1]))
    if inline:
        out += f_bytes(5, s.data)
    out += f_varint(6, len(s.data) if s.size is None else s.size)
    if s.original_shape:
        out += f_bytes(7, shape_msg(s.original_shape, packed))
    if s.sub_format:
        out += f_varint(8, s.sub_format)
    return out


def _input_msg(s: Spec, inline: bool, packed: bool) -> bytes:
    out = f_varint(1, s.data_type) + f_varint(2, s.format) + f_bytes(3, shape_msg(s.shape, packed))
    if inline:
        out += f_bytes(4, s.data)
    out += f_varint(5, len(s.data) if s.size is None else s.size)
    if s.original_shape:
        out += f_bytes(6, shape_msg(s.original_shape, packed))
    return out


def encode(spec: DumpSpec, inline: bool = False, packed: bool = True) -> bytes:
    """Serialize a DumpData message (data fields only when ``inline``)."""
    msg = b""
    if spec.version:
        msg += f_bytes(1, spec.version.encode())
    msg += f_varint(2, spec.dump_time)
    for s in spec.outputs:
        msg += f_bytes(3, _output_msg(s, inline, packed))
    for s in spec.inputs:
        msg += f_bytes(4, _input_msg(s, inline, packed))
    for s in spec.buffers:
        msg += f_bytes(5, f_varint(1, 0) + (f_bytes(2, s.data) if inline else b"") + f_varint(3, len(s.data)))
    msg += f_bytes(6, spec.op_name.encode())
    return msg


#: dump protobuf OutputDataType code -> GE DataType code (the nano head's data types)
GE_DT = {1: 0, 2: 1, 3: 2, 4: 4, 5: 6, 6: 7, 7: 3, 8: 9, 9: 8, 10: 10, 11: 12, 12: 11, 16: 16, 17: 17, 27: 27, 29: 30}


def _u32(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def _tlnv(tag: int, payload: bytes) -> bytes:
    return _u32(tag) + _u32(len(payload)) + payload


def nano_head(spec: DumpSpec, version: int = 1) -> bytes:
    """The TLV head of a nano dump (Atlas nano devices), field by field from the layout description."""
    def entries(s: Spec, output: bool, index: int) -> bytes:
        size = len(s.data) if s.size is None else s.size
        fixed = _u32(GE_DT.get(s.data_type, s.data_type)) + _u32(s.format) + _u32(0)
        if output:
            original_index = s.original_op[1] if s.original_op else 0
            fixed += _u32(original_index) + _u32(GE_DT.get(s.data_type, s.data_type)) + _u32(s.format)
        fixed += _u64(0xC0000000 + 4096 * index) + _u64(0) + _u64(size)
        tlvs = _tlnv(0, b"".join(_u64(d) for d in s.shape))
        if s.original_shape:
            tlvs += _tlnv(1, b"".join(_u64(d) for d in s.original_shape))
        if output and s.original_op:
            tlvs += _tlnv(2, s.original_op[0].encode())
        return fixed + _u32(len(tlvs)) + tlvs

    inputs = _u32(len(spec.inputs)) + b"".join(entries(s, False, i) for i, s in enumerate(spec.inputs))
    outputs = _u32(len(spec.outputs)) + b"".join(entries(s, True, i) for i, s in enumerate(spec.outputs))
    return _u32(0x5A5A5A5A) + _u32(version) + _tlnv(4, inputs) + _tlnv(5, outputs)


def file_bytes(spec: DumpSpec, variant: str = "binary", packed: bool = True) -> bytes:
    if variant == "protobuf":
        return encode(spec, inline=True, packed=packed)
    if variant == "nano":
        head = nano_head(spec)
        return struct.pack("<Q", len(head)) + head + b"".join(s.data for s in spec.inputs + spec.outputs)
    header = encode(spec, inline=False, packed=packed)
    body = b"".join(s.data for s in spec.inputs) + b"".join(s.data for s in spec.outputs) + \
        b"".join(s.data for s in spec.buffers)
    return struct.pack("<Q", len(header)) + header + body


def escape(name: str) -> str:
    return name.replace(".", "_").replace("/", "_").replace("\\", "_").replace(" ", "_")


def dump_dir(root: Path, model: str = "model", model_id: int = 1, index: int = 0) -> Path:
    d = Path(root) / "20260101120000" / "0" / escape(model) / str(model_id) / str(index)
    d.mkdir(parents=True, exist_ok=True)
    return d


def write(directory: Path, op_type: str, spec: DumpSpec, task: int = 1, stream: int = 1, ts: int | None = None,
          variant: str = "binary") -> Path:
    ts = spec.dump_time if ts is None else ts
    path = Path(directory) / f"{escape(op_type)}.{escape(spec.op_name)}.{task}.{stream}.{ts}"
    path.write_bytes(file_bytes(spec, variant))
    return path


# ------------------------------------------------------------------ device layouts (index formulas)

def to_nc1hwc0(x: np.ndarray, c0: int) -> np.ndarray:
    n, c, h, w = x.shape
    c1 = -(-c // c0)
    out = np.zeros((n, c1, h, w, c0), x.dtype)
    ni, ci, hi, wi = np.indices(x.shape)
    out[ni, ci // c0, hi, wi, ci % c0] = x
    return out


def to_fractal_z(wt: np.ndarray, c0: int = 16, ni_: int = 16) -> np.ndarray:
    n, c, h, w = wt.shape
    c1, no = -(-c // c0), -(-n // ni_)
    out = np.zeros((c1 * h * w, no, ni_, c0), wt.dtype)
    nn, cc, hh, ww = np.indices(wt.shape)
    out[((cc // c0) * h + hh) * w + ww, nn // ni_, nn % ni_, cc % c0] = wt
    return out


def to_fractal_nz(x: np.ndarray, c0: int = 16, ni_: int = 16) -> np.ndarray:
    batch = x.shape[:-2]
    rows, cols = x.shape[-2:]
    b = int(np.prod(batch)) if batch else 1
    c1, no = -(-cols // c0), -(-rows // ni_)
    flat = x.reshape(b, rows, cols)
    out = np.zeros((b, c1, no, ni_, c0), x.dtype)
    bb, rr, cc = np.indices(flat.shape)
    out[bb, cc // c0, rr // ni_, rr % ni_, cc % c0] = flat
    return out.reshape(*batch, c1, no, ni_, c0)


def to_ndc1hwc0(x: np.ndarray, c0: int = 16) -> np.ndarray:
    n, c, d, h, w = x.shape
    c1 = -(-c // c0)
    out = np.zeros((n, d, c1, h, w, c0), x.dtype)
    nn, cc, dd, hh, ww = np.indices(x.shape)
    out[nn, dd, cc // c0, hh, ww, cc % c0] = x
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    """Expected float32 value of bfloat16 bits, computed from sign/exponent/mantissa."""
    bits = bits.astype(np.int64)
    sign = np.where(bits & 0x8000, -1.0, 1.0)
    exp = (bits >> 7) & 0xFF
    mant = bits & 0x7F
    val = np.where(exp == 0, mant / 128.0 * 2.0 ** -126, (1 + mant / 128.0) * 2.0 ** (np.minimum(exp, 254) - 127.0))
    val = np.where(exp == 255, np.where(mant == 0, np.inf, np.nan), val)
    return (sign * val).astype(np.float32)
