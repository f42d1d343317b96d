"""Ascend data types and device formats, converted back to the framework layout.

Device formats (``OutputFormat`` codes of the dump header) and what they become:

- NC1HWC0 / NC1HWC0_C04 ``(N, C1, H, W, C0)`` -> NCHW (or NHWC when the origin format says so),
  channel padding stripped with the original shape. C0 is read from the dump shape (16; 32 for
  int8/uint8; 4 for _C04), never assumed.
- FRACTAL_Z ``(C1*H*W, No, Ni, C0)`` -> NCHW weights (needs the original shape for H, W).
- FRACTAL_NZ ``(..., C1, No, Ni, C0)`` -> ND ``(..., N, C)`` (needs the original shape).
- NDC1HWC0 ``(N, D, C1, H, W, C0)`` -> NCDHW.
- NCHW, NHWC, ND, HWCN, NCDHW, NDHWC, ...: kept (reshaped to the original shape when only the
  rank differs).

When a conversion is impossible (no original shape, group-conv FRACTAL_Z, an unknown format) the
tensor keeps its device shape and its ``layout`` is the device format name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netdiff.errors import DumpFormatError

FORMAT_NAMES = {
    0: "NCHW", 1: "NHWC", 2: "ND", 3: "NC1HWC0", 4: "FRACTAL_Z", 5: "NC1C0HWPAD", 6: "NHWC1C0", 7: "FSR_NCHW",
    8: "FRACTAL_DECONV", 9: "C1HWNC0", 10: "FRACTAL_DECONV_TRANSPOSE", 11: "FRACTAL_DECONV_SP_STRIDE_TRANS",
    12: "NC1HWC0_C04", 13: "FRACTAL_Z_C04", 14: "CHWN", 15: "FRACTAL_DECONV_SP_STRIDE8_TRANS", 16: "HWCN",
    17: "NC1KHKWHWC0", 18: "BN_WEIGHT", 19: "FILTER_HWCK", 25: "C1HWNCoC0", 26: "MD", 27: "NDHWC",
    28: "FRACTAL_ZZ", 29: "FRACTAL_NZ", 30: "NCDHW", 31: "DHWCN", 32: "NDC1HWC0", 33: "FRACTAL_Z_3D", 34: "CN",
    35: "NC", 36: "DHWNC", 37: "FRACTAL_Z_3D_TRANSPOSE", 38: "FRACTAL_ZN_LSTM", 39: "FRACTAL_Z_G", 40: "RESERVED",
    41: "ALL", 42: "NULL", 43: "ND_RNN_BIAS", 44: "FRACTAL_ZN_RNN", 45: "YUV", 46: "YUV_A",
}
FORMAT_CODES = {v: k for k, v in FORMAT_NAMES.items()}

#: OutputDataType code -> (name, storage dtype, dtype ``load()`` returns).
DTYPES = {
    0: ("DT_UNDEFINED", "int8", "int8"), 1: ("DT_FLOAT", "float32", "float32"),
    2: ("DT_FLOAT16", "float16", "float16"), 3: ("DT_INT8", "int8", "int8"), 4: ("DT_UINT8", "uint8", "uint8"),
    5: ("DT_INT16", "int16", "int16"), 6: ("DT_UINT16", "uint16", "uint16"), 7: ("DT_INT32", "int32", "int32"),
    8: ("DT_INT64", "int64", "int64"), 9: ("DT_UINT32", "uint32", "uint32"), 10: ("DT_UINT64", "uint64", "uint64"),
    11: ("DT_BOOL", "bool", "bool"), 12: ("DT_DOUBLE", "float64", "float64"),
    16: ("DT_COMPLEX64", "complex64", "complex64"), 17: ("DT_COMPLEX128", "complex128", "complex128"),
    23: ("DT_RESOURCE", "int64", "int64"), 27: ("DT_BF16", "uint16", "float32"),
    29: ("DT_UINT1", "uint8", "uint8"), 34: ("DT_FLOAT8_E5M2", "uint8", "float32"),
    35: ("DT_FLOAT8_E4M3FN", "uint8", "float32"),
}
DTYPE_CODES = {v[0]: k for k, v in DTYPES.items()}
_INT8_LIKE = {3, 4}


def format_name(code: int) -> str:
    """Name of a (possibly packed) format code; the low byte is the primary format."""
    return FORMAT_NAMES.get(code & 0xFF, f"FORMAT_{code & 0xFF}")


def dtype_info(code: int) -> tuple[str, str, str] | None:
    """(name, storage dtype, loaded dtype) of a data-type code, or None when unsupported."""
    return DTYPES.get(code)


@dataclass(frozen=True)
class Conversion:
    """How to turn the flat device data into the framework tensor.

    Attributes:
        shape: Shape of the converted tensor.
        layout: Framework layout tag ("NCHW", "NHWC", "ND", "NCDHW") or the device format name.
        kind: Converter key ("plain", "nc1hwc0", "fractal_z", "fractal_nz", "ndc1hwc0").
        device_shape: Shape the flat data is viewed as first.
        note: Why a conversion was skipped or padding kept, else "".
    """

    shape: tuple[int, ...]
    layout: str
    kind: str
    device_shape: tuple[int, ...]
    note: str = ""
    to_nhwc: bool = False

    def apply(self, flat: np.ndarray) -> np.ndarray:
        """Convert ``flat`` (device element order) into :attr:`shape`."""
        a = flat.reshape(self.device_shape)
        if self.kind == "nc1hwc0":
            n, c1, h, w, c0 = self.device_shape
            if self.to_nhwc:
                a = a.transpose(0, 2, 3, 1, 4).reshape(n, h, w, c1 * c0)[..., :self.shape[3]]
            else:
                a = a.transpose(0, 1, 4, 2, 3).reshape(n, c1 * c0, h, w)[:, :self.shape[1]]
        elif self.kind == "fractal_z":
            no, ni, c0 = self.device_shape[1:]
            n, c, h, w = self.shape
            c1 = self.device_shape[0] // (h * w)
            a = a.reshape(c1, h, w, no, ni, c0).transpose(3, 4, 0, 5, 1, 2).reshape(no * ni, c1 * c0, h, w)[:n, :c]
        elif self.kind == "fractal_nz":
            *_, c1, no, ni, c0 = self.device_shape
            rows, cols = (self.shape[-2] if len(self.shape) >= 2 else 1), (self.shape[-1] if self.shape else 1)
            a = a.reshape(-1, c1, no, ni, c0).transpose(0, 2, 3, 1, 4).reshape(-1, no * ni, c1 * c0)[:, :rows, :cols]
        elif self.kind == "ndc1hwc0":
            n, d, c1, h, w, c0 = self.device_shape
            a = a.transpose(0, 2, 5, 1, 3, 4).reshape(n, c1 * c0, d, h, w)[:, :self.shape[1]]
        return np.ascontiguousarray(a).reshape(self.shape)


def plan(fmt: int, device_shape: tuple[int, ...], original_shape: tuple[int, ...] = (),
         origin_format: str | None = None, sub_format: int = 0) -> Conversion:
    """Decide how a tensor stored as ``fmt``/``device_shape`` maps to the framework layout."""
    name = format_name(fmt)
    shape, orig = tuple(device_shape), tuple(original_shape)
    if name in ("NC1HWC0", "NC1HWC0_C04") and len(shape) == 5:
        return _plan_nc1hwc0(shape, orig, origin_format)
    if name == "FRACTAL_Z" and len(shape) == 4:
        return _plan_fractal_z(shape, orig, sub_format)
    if name == "FRACTAL_NZ" and len(shape) >= 4:
        return _plan_fractal_nz(shape, orig)
    if name == "NDC1HWC0" and len(shape) == 6:
        return _plan_ndc1hwc0(shape, orig)
    if name in ("NC1HWC0", "NC1HWC0_C04", "FRACTAL_Z", "FRACTAL_NZ", "NDC1HWC0") or name not in _PLAIN:
        return Conversion(shape, name, "plain", shape, f"{name} with device shape {list(shape)} is not converted")
    layout = name if name in ("NCHW", "NHWC", "NCDHW", "NDHWC") else "ND"
    if orig and orig != shape and math.prod(orig) == math.prod(shape):
        return Conversion(orig, layout, "plain", shape)
    return Conversion(shape, layout, "plain", shape)


_PLAIN = {"NCHW", "NHWC", "ND", "HWCN", "NCDHW", "NDHWC", "CHWN", "DHWCN", "DHWNC", "CN", "NC", "MD", "RESERVED"}


def _padded(shape: tuple[int, ...], layout: str, device: tuple[int, ...], kind: str, why: str, nhwc: bool = False) -> Conversion:
    return Conversion(shape, layout, kind, device, f"channel padding kept: {why}", nhwc)


def _plan_nc1hwc0(shape: tuple[int, ...], orig: tuple[int, ...], origin_format: str | None) -> Conversion:
    n, c1, h, w, c0 = shape
    channels = c1 * c0
    if len(orig) == 4:
        nchw_ok = orig[0] == n and orig[2:] == (h, w) and orig[1] <= channels
        nhwc_ok = orig[0] == n and orig[1:3] == (h, w) and orig[3] <= channels
        if origin_format == "NHWC" and nhwc_ok or (origin_format != "NCHW" and nhwc_ok and not nchw_ok):
            return Conversion(orig, "NHWC", "nc1hwc0", shape, to_nhwc=True)
        if nchw_ok:
            return Conversion(orig, "NCHW", "nc1hwc0", shape)
    elif len(orig) == 2 and orig[0] == n and h == w == 1 and orig[1] <= channels:
        return Conversion(orig, "ND", "nc1hwc0", shape)
    why = "no original shape in the dump or fusion map" if not orig else f"original shape {list(orig)} does not fit"
    return _padded((n, channels, h, w), "NCHW", shape, "nc1hwc0", why)


def _plan_fractal_z(shape: tuple[int, ...], orig: tuple[int, ...], sub_format: int) -> Conversion:
    if sub_format > 1:
        return Conversion(shape, "FRACTAL_Z", "plain", shape, f"group-conv FRACTAL_Z (groups={sub_format}) is not converted")
    if len(orig) == 4:
        n, c, h, w = orig
        _, no, ni, c0 = shape
        c1 = shape[0] // (h * w) if h * w else 0
        if h * w and c1 * h * w == shape[0] and no * ni >= n and c1 * c0 >= c:
            return Conversion(orig, "NCHW", "fractal_z", shape)
    why = "no original shape" if not orig else f"original shape {list(orig)} does not fit"
    return Conversion(shape, "FRACTAL_Z", "plain", shape, f"FRACTAL_Z not converted: {why}")


def _plan_fractal_nz(shape: tuple[int, ...], orig: tuple[int, ...]) -> Conversion:
    *batch, c1, no, ni, c0 = shape
    if orig:
        rows = orig[-2] if len(orig) >= 2 else 1
        cols = orig[-1]
        outer = math.prod(orig[:-2]) if len(orig) > 2 else 1
        if math.prod(batch) == outer and no * ni >= rows and c1 * c0 >= cols:
            return Conversion(orig, "ND", "fractal_nz", shape)
    why = "no original shape (FRACTAL_NZ needs it)" if not orig else f"original shape {list(orig)} does not fit"
    return Conversion(shape, "FRACTAL_NZ", "plain", shape, f"FRACTAL_NZ not converted: {why}")


def _plan_ndc1hwc0(shape: tuple[int, ...], orig: tuple[int, ...]) -> Conversion:
    n, d, c1, h, w, c0 = shape
    if len(orig) == 5 and orig[0] == n and orig[2:] == (d, h, w) and orig[1] <= c1 * c0:
        return Conversion(orig, "NCDHW", "ndc1hwc0", shape)
    why = "no original shape" if not orig else f"original shape {list(orig)} does not fit"
    return _padded((n, c1 * c0, d, h, w), "NCDHW", shape, "ndc1hwc0", why)


# ------------------------------------------------------------------ data decoding

def _e4m3fn_table() -> np.ndarray:
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    mant = codes & 0x7
    value = np.where(exp == 0, mant / 8.0 * 2.0 ** -6, (1 + mant / 8.0) * 2.0 ** (exp - 7.0))
    value = sign * value
    value[(exp == 15) & (mant == 7)] = np.nan
    return value.astype(np.float32)


def decode(raw: np.ndarray, code: int, count: int) -> np.ndarray:
    """Decode ``raw`` bytes (uint8) of data-type ``code`` into ``count`` numpy elements."""
    name, storage, _ = DTYPES[code]
    if name == "DT_UINT1":
        return np.unpackbits(raw)[:count]
    values = raw.view(np.dtype(storage).newbyteorder("<"))[:count]
    if name == "DT_BF16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    if name == "DT_FLOAT8_E5M2":
        return (values.astype(np.uint16) << 8).view(np.float16).astype(np.float32)
    if name == "DT_FLOAT8_E4M3FN":
        return _e4m3fn_table()[values]
    return values.astype(values.dtype.newbyteorder("="), copy=False)


def element_count(code: int, shape: tuple[int, ...], size: int) -> int:
    """Elements the data holds: prod(shape), or what ``size`` bytes hold when shape is empty."""
    name, storage, _ = DTYPES[code]
    if shape:
        return math.prod(shape)
    if name == "DT_UINT1":
        return size * 8
    return size // np.dtype(storage).itemsize


def stored_bytes(code: int, count: int) -> int:
    """Bytes ``count`` elements of data-type ``code`` occupy."""
    name, storage, _ = DTYPES[code]
    if name == "DT_UINT1":
        return (count + 7) // 8
    return count * np.dtype(storage).itemsize


def load_bytes(path: Path, offset: int, nbytes: int) -> np.ndarray:
    """Memory-map ``nbytes`` at ``offset`` of ``path`` as uint8 (read-only)."""
    if nbytes == 0:
        return np.zeros(0, np.uint8)
    size = path.stat().st_size
    if offset + nbytes > size:
        raise DumpFormatError(f"{path}: tensor data at offset {offset} (+{nbytes} bytes) runs past the file end "
                              f"({size} bytes); the file changed since it was read")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(nbytes,))
