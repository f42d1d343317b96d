"""Decode a binary ``.caffemodel`` (protobuf wire format) with our own minimal schema.

Only the messages netdiff needs are decoded: NetParameter, LayerParameter (V2, field 100),
V1LayerParameter (field 2), BlobProto and BlobShape. Field numbers are those of BVLC
``caffe.proto``; unknown fields (fork ``*_param`` messages, training state) are skipped, so
forks whose parameter numbers clash still load. Every length is checked against the buffer
before it is used.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netdiff._protowire import FIXED32, FIXED64, LEN, VARINT, WireError, iter_fields, packed_varints, read_field
from netdiff._input_files import read_capped
from netdiff.errors import ModelError

#: V1 LayerType enum value -> V2 type string (BVLC upgrade_proto.cpp UpgradeV1LayerType).
V1_TYPES = {
    0: "", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}

#: V1 LayerType enum names as written in V1 text prototxt (``type: CONVOLUTION``), by value.
V1_ENUM_NAMES = (
    "NONE", "ACCURACY", "BNLL", "CONCAT", "CONVOLUTION", "DATA", "DROPOUT", "EUCLIDEAN_LOSS", "FLATTEN",
    "HDF5_DATA", "HDF5_OUTPUT", "IM2COL", "IMAGE_DATA", "INFOGAIN_LOSS", "INNER_PRODUCT", "LRN",
    "MULTINOMIAL_LOGISTIC_LOSS", "POOLING", "RELU", "SIGMOID", "SOFTMAX", "SOFTMAX_LOSS", "SPLIT", "TANH",
    "WINDOW_DATA", "ELTWISE", "POWER", "SIGMOID_CROSS_ENTROPY_LOSS", "HINGE_LOSS", "MEMORY_DATA", "ARGMAX",
    "THRESHOLD", "DUMMY_DATA", "SLICE", "MVN", "ABSVAL", "SILENCE", "CONTRASTIVE_LOSS", "EXP", "DECONVOLUTION",
)

# raw_data_type (NVCaffe/OpenCV extension): DOUBLE=0, FLOAT=1, FLOAT16=2, INT=3, UINT=4
_RAW_DTYPES = {0: "<f8", 1: "<f4", 2: "<f2", 3: "<i4", 4: "<u4"}
_FLOAT_KEY, _DOUBLE_KEY = 5 << 3 | FIXED32, 8 << 3 | FIXED64  # one-byte keys of unpacked data / double_data


@dataclass
class BlobData:
    """One weight blob: its array (float32) and whether its shape was given as legacy 4-D."""

    array: np.ndarray
    legacy: bool = False


@dataclass
class BinaryLayer:
    """A layer of a caffemodel: name, type string, bottoms, tops and weight blobs."""

    name: str
    type: str
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    blobs: list[BlobData] = field(default_factory=list)


@dataclass
class BinaryNet:
    """The parts of a NetParameter netdiff uses."""

    name: str = ""
    layers: list[BinaryLayer] = field(default_factory=list)
    v1: bool = False


def _string(buf: memoryview, span: tuple[int, int]) -> str:
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("a name is not valid UTF-8") from e


def _unpacked_run(buf: memoryview, start: int, end: int, tag: int, size: int) -> int:
    """Count consecutive unpacked fixed-size elements with one-byte ``tag`` starting at ``start``."""
    stride = size + 1
    n = (end - start) // stride
    if n == 0:
        return 0
    rows = np.frombuffer(buf, dtype=np.uint8, count=n * stride, offset=start).reshape(n, stride)
    bad = np.flatnonzero(rows[:, 0] != tag)
    return int(bad[0]) if bad.size else n


class _BlobReader:
    """Accumulate the fields of one BlobProto."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.legacy: dict[int, int] = {}
        self.dims: list[int] | None = None
        self.floats: list[np.ndarray] = []
        self.doubles: list[np.ndarray] = []
        self.raw: tuple[int, int] | None = None
        self.raw_type = 1

    def read(self, start: int, end: int) -> BlobData:
        buf = self.buf
        pos = start
        while pos < end:
            key = buf[pos]
            if key in (_FLOAT_KEY, _DOUBLE_KEY):  # unpacked data: decode the whole run of elements at once
                size = 4 if key == _FLOAT_KEY else 8
                run = _unpacked_run(buf, pos, end, key, size)
                if run:
                    rows = np.frombuffer(buf, dtype=np.uint8, count=run * (size + 1), offset=pos)
                    run_arr = rows.reshape(run, size + 1)[:, 1:].copy().view(f"<f{size}").ravel()
                    (self.floats if size == 4 else self.doubles).append(run_arr)
                    pos += run * (size + 1)
                    continue
            number, wire, value, pos = read_field(buf, pos, end, groups="skip")
            self._field(number, wire, value)
        return self._finish()

    def _field(self, number: int, wire: int, value) -> None:
        buf = self.buf
        if number in (1, 2, 3, 4) and wire == VARINT:
            self.legacy[number] = _signed32(value)
        elif number == 7 and wire == LEN:
            self.dims = _blob_shape(buf, *value)
        elif (number, wire) in ((5, LEN), (5, FIXED32), (8, LEN), (8, FIXED64)):  # packed or one element
            size = 4 if number == 5 else 8
            start, stop = value
            if (stop - start) % size:
                raise WireError(f"packed {'float' if size == 4 else 'double'} data length {stop - start} "
                                f"is not a multiple of {size}")
            arr = np.frombuffer(buf, dtype=f"<f{size}", count=(stop - start) // size, offset=start)
            (self.floats if number == 5 else self.doubles).append(arr)
        elif number == 10 and wire == VARINT:
            self.raw_type = value
        elif number == 12 and wire == LEN:
            self.raw = value
        # diff (6), double_diff (9) and unknown fields are skipped

    def _finish(self) -> BlobData:
        legacy = bool(self.legacy)
        if legacy:
            shape = [self.legacy.get(i, 1) for i in (1, 2, 3, 4)]
        else:
            shape = list(self.dims or [])
        if any(d < 0 for d in shape):
            raise WireError(f"negative blob dimension in {shape}")
        count = math.prod(shape) if shape else 0  # exact: an int64 product could wrap around to a small number
        if self.doubles:
            data = np.concatenate(self.doubles).astype(np.float32)
        elif self.floats:
            data = np.concatenate(self.floats).astype(np.float32, copy=True)
        elif self.raw is not None:
            dtype = _RAW_DTYPES.get(self.raw_type)
            if dtype is None:
                raise WireError(f"unknown raw_data_type {self.raw_type}")
            start, stop = self.raw
            itemsize = np.dtype(dtype).itemsize
            if (stop - start) % itemsize:
                raise WireError("raw_data length is not a multiple of its element size")
            data = np.frombuffer(self.buf, dtype=dtype, count=(stop - start) // itemsize,
                                 offset=start).astype(np.float32)
        else:
            data = np.zeros(0, np.float32)
        if not shape:
            shape = [data.size]
            count = data.size
        if data.size != count:
            raise WireError(f"blob shape {shape} needs {count} values but the file holds {data.size}")
        return BlobData(data.reshape(shape), legacy)


def _signed32(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _blob_shape(buf: memoryview, start: int, end: int) -> list[int]:
    dims: list[int] = []
    for number, wire, value in iter_fields(buf, start, end, groups="skip"):
        if number != 1:
            continue
        if wire == VARINT:
            dims.append(_signed32(value))
        elif wire == LEN:
            dims.extend(_signed32(v) for v in packed_varints(buf, value))
    return dims


def _layer(buf: memoryview, start: int, end: int, v1: bool) -> BinaryLayer:
    # V2: name 1, type 2 (string), bottom 3, top 4, blobs 7; V1: bottom 2, top 3, name 4, type 5 (enum), blobs 6
    f_name, f_bottom, f_top, f_blobs = (4, 2, 3, 6) if v1 else (1, 3, 4, 7)
    layer = BinaryLayer(name="", type="")
    for number, wire, value in iter_fields(buf, start, end, groups="skip"):
        if wire == LEN and number == f_name:
            layer.name = _string(buf, value)
        elif wire == LEN and number == f_bottom:
            layer.bottoms.append(_string(buf, value))
        elif wire == LEN and number == f_top:
            layer.tops.append(_string(buf, value))
        elif wire == LEN and number == f_blobs:
            layer.blobs.append(_BlobReader(buf).read(*value))
        elif number == (5 if v1 else 2):
            if v1 and wire == VARINT:
                layer.type = V1_TYPES.get(value, f"V1Type{value}")
            elif not v1 and wire == LEN:
                layer.type = _string(buf, value)
    return layer


def parse_caffemodel(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> BinaryNet:
    """Decode a caffemodel buffer into a :class:`BinaryNet`.

    Raises:
        ModelError: The buffer is truncated or not a Caffe NetParameter.
    """
    buf = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    net = BinaryNet()
    try:
        for number, wire, value in iter_fields(buf, 0, len(buf), groups="skip"):
            if number == 1 and wire == LEN:
                net.name = _string(buf, value)
            elif number == 100 and wire == LEN:
                net.layers.append(_layer(buf, *value, v1=False))
            elif number == 2 and wire == LEN:
                net.layers.append(_layer(buf, *value, v1=True))
                net.v1 = True
    except WireError as e:
        raise ModelError(f"{source}: not a valid caffemodel ({e}; the file may be truncated or corrupt)") from None
    if not net.layers:
        raise ModelError(f"{source}: not a valid caffemodel (no layers found)")
    return net


def read_caffemodel(path: str | Path) -> BinaryNet:
    """Read and decode a ``.caffemodel`` file.

    Raises:
        ModelError: The file is missing, unreadable, truncated or not a caffemodel.
    """
    path = Path(path)
    try:
        data = read_capped(path, "caffemodel", 2**40, ModelError)
    except OSError as e:
        raise ModelError(f"{path}: cannot read caffemodel ({e.strerror or e})") from e
    return parse_caffemodel(data, str(path))
