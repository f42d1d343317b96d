"""Test-only caffemodel WRITER (protobuf wire encoding, independent of netdiff's reader) and helpers."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from pbwrite import key, length_delimited, varint  # noqa: F401  (varint/key are used by tests)


def ld(number: int, payload: bytes) -> bytes:
    """Length-delimited field."""
    return length_delimited(number, payload)


def string(number: int, text: str) -> bytes:
    return ld(number, text.encode())


def uint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def blob(array, *, legacy: bool = False, packed: bool = True, double: bool = False, fp16_raw: bool = False) -> bytes:
    """BlobProto: shape (7) or legacy num/channels/height/width (1-4); data (5), double_data (8), raw_data (12)."""
    a = np.asarray(array, dtype=np.float64)
    out = b""
    if legacy:
        dims = [1] * (4 - a.ndim) + list(a.shape)
        for number, d in zip((1, 2, 3, 4), dims):
            out += uint(number, d)
    else:
        out += ld(7, ld(1, b"".join(varint(d) for d in a.shape)))  # BlobShape.dim packed
    flat = a.ravel()
    if fp16_raw:
        return out + uint(10, 2) + ld(12, flat.astype("<f2").tobytes())
    fmt, number, wire = ("<d", 8, 1) if double else ("<f", 5, 5)
    if packed:
        out += ld(number, b"".join(struct.pack(fmt, v) for v in flat))
    else:
        out += b"".join(key(number, wire) + struct.pack(fmt, v) for v in flat)
    return out


def layer(name: str, type_: str, bottoms=(), tops=(), blobs=(), v1_type: int | None = None, **blob_opts) -> bytes:
    """LayerParameter (V2) or V1LayerParameter when ``v1_type`` is given."""
    if v1_type is None:
        out = string(1, name) + string(2, type_)
        out += b"".join(string(3, b) for b in bottoms) + b"".join(string(4, t) for t in tops)
        out += b"".join(ld(7, blob(x, **blob_opts)) for x in blobs)
        return out
    out = b"".join(string(2, b) for b in bottoms) + b"".join(string(3, t) for t in tops)
    out += string(4, name) + uint(5, v1_type)
    return out + b"".join(ld(6, blob(x, **blob_opts)) for x in blobs)


def netparam(layers: list[bytes], *, v1: bool = False, name: str = "test") -> bytes:
    return string(1, name) + b"".join(ld(2 if v1 else 100, x) for x in layers)


def write_model(folder: Path, prototxt: str, weights: dict[str, list], *, stem: str = "net", **blob_opts) -> Path:
    """Write ``<stem>.prototxt`` and ``<stem>.caffemodel`` (layers in ``weights`` with their blobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = folder / f"{stem}.prototxt"
    proto.write_text(prototxt)
    layers = [layer(name, "Any", blobs=blobs, **blob_opts) for name, blobs in weights.items()]
    (folder / f"{stem}.caffemodel").write_bytes(netparam(layers or [layer("dummy", "Data")]))
    return proto


def run(folder: Path, prototxt: str, weights: dict[str, list], feeds: dict[str, np.ndarray], **blob_opts):
    """Write the model, run it through netdiff's caffe runner and return the Dump."""
    from netdiff.runners.caffe import CaffeModel

    proto = write_model(folder, prototxt, weights, **blob_opts)
    return CaffeModel(proto).run({k: np.asarray(v, np.float32) for k, v in feeds.items()})


def one_layer(folder: Path, shape, body: str, weights=None, bottoms=("data",), tops=("out",), extra_inputs=None,
              x=None, seed=0):
    """Run a net made of one layer ``body`` (the text inside ``layer { }`` after name/type lines)."""
    rng = np.random.default_rng(seed)
    inputs = {"data": shape, **(extra_inputs or {})}
    text = "".join(f'input: "{n}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n' for n, s in inputs.items())
    text += "layer {\n  name: \"L\"\n" + "".join(f'  bottom: "{b}"\n' for b in bottoms)
    text += "".join(f'  top: "{t}"\n' for t in tops) + body + "\n}\n"
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}
    if x is not None:
        feeds["data"] = np.asarray(x, np.float32)
    dump = run(folder, text, {"L": weights} if weights else {}, feeds)
    return dump, feeds


def shared_dir() -> Path:
    """The shared fixtures folder, or skip the test."""
    env = os.environ.get("NETDIFF_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared")
    for c in candidates:
        if (c / "fixtures").is_dir():
            return c.resolve()
    pytest.skip("shared fixtures folder not found (set NETDIFF_SHARED)")
