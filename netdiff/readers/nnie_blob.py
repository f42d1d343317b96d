"""Reader for a raw NNIE output blob saved from the board (``SVP_BLOB_S``'s memory, as is).

Layout (HiSVP API §2.4, SDK sample): planar NCHW, little-endian int32 in Q20.12 (value * 4096),
each row padded to ``stride`` bytes (the SDK allocates ``ALIGN16(width * 4)``). The row of
(n, c, h) starts at byte ``((n*C + c)*H + h) * stride``; the first W words are data.

Options: ``shape`` ("C,H,W" or "N,C,H,W", required), ``stride`` (bytes per row), ``q12``
(divide by 4096, default true; false keeps the raw integers), ``dtype`` ("s32" default, or "f32"
for a blob the application already converted to float: then nothing is divided), ``name``.
A float file fed as s32 reads as garbage: say ``dtype=f32`` for already-converted output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import DumpFormatError
from netdiff.readers._nnie_options import as_bool, as_int, as_shape, cfg_header
from netdiff.readers._nnie_text import DUMP_META, strip_report
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

SUFFIXES = (".s32", ".q12", ".nnieblob")


def align(value: int, to: int = 16) -> int:
    """Round ``value`` up to a multiple of ``to``."""
    return (value + to - 1) // to * to


def blob_geometry(path: Path, shape: tuple[int, ...], stride: int | None = None) -> tuple[tuple[int, int, int, int], int]:
    """Return ((N, C, H, W), row stride in bytes) after checking them against the file size.

    A 3-D ``shape`` (C, H, W) takes N from the file size.

    Raises:
        DumpFormatError: The stride cannot hold a row, or the size does not fit.
    """
    n, c, h, w = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) < 4 else tuple(shape)
    row = align(w * 4) if stride is None else stride
    if row < w * 4 or row % 4:
        raise DumpFormatError(f"{path}: stride {row} bytes cannot hold a row of {w} 4-byte values "
                              f"(a multiple of 4, >= {w * 4} expected)")
    size = path.stat().st_size
    per_image = c * h * row
    if len(shape) < 4 and size and size % per_image == 0:
        n = size // per_image
    if size != n * per_image:
        hint = f" (it matches an unpadded blob: pass stride={w * 4})" if size == n * c * h * w * 4 else ""
        raise DumpFormatError(f"{path}: {size} bytes does not fit shape {[n, c, h, w]} with a {row}-byte row stride "
                              f"({n * per_image} bytes expected){hint}")
    return (n, c, h, w), row


def read_blob(path: Path, shape: tuple[int, ...], stride: int | None = None, q12: bool = True,
              dtype: str = "s32") -> np.ndarray:
    """Read a stride-padded NNIE blob into a float32 (N, C, H, W) array (padding stripped).

    Raises:
        DumpFormatError: The file size does not fit the shape and stride, or ``dtype`` is unknown.
    """
    kind = {"s32": "<i4", "f32": "<f4"}.get(dtype)
    if kind is None:
        raise DumpFormatError(f"{path}: option dtype must be 's32' or 'f32', got {dtype!r}")
    (n, c, h, w), row = blob_geometry(path, shape, stride)
    raw = np.memmap(path, dtype=kind, mode="r", shape=(n * c * h, row // 4))
    data = np.asarray(raw[:, :w], dtype=np.float64)
    del raw
    if dtype == "s32" and q12:
        data = data / 4096.0
    return data.reshape(n, c, h, w).astype(np.float32)


@register_reader("nnie-blob")
class NnieBlobReader(Reader):
    """A raw board output blob (s32 Q20.12, rows padded to the stride); needs ``shape``."""

    priority = 5
    options = {
        "shape": "C,H,W or N,C,H,W of the blob (required)",
        "stride": "bytes per row (default ALIGN16(W*4))",
        "q12": "divide by 4096 (default true); false keeps raw Q12 integers",
        "dtype": "s32 (default) or f32 when the application already converted the blob to float",
        "name": "tensor name (default: the file stem); use the reference's output name",
        "cfg": "mapper .cfg file; its settings are shown in the report header",
    }

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in SUFFIXES

    def _read(self, path: Path, **options: Any) -> Dump:
        if path.is_dir():
            raise DumpFormatError(f"{path}: nnie-blob reads one blob file, not a directory")
        if "shape" not in options:
            raise DumpFormatError(f"{path}: a raw NNIE blob has no header; give its shape (option shape=C,H,W)")
        shape = as_shape(options["shape"], "shape", path)
        stride = as_int(options["stride"], "stride", path) if "stride" in options else None
        q12 = as_bool(options.get("q12", True), "q12", path)
        dtype = str(options.get("dtype", "s32")).lower()
        if dtype not in ("s32", "f32"):
            raise DumpFormatError(f"{path}: option dtype must be 's32' or 'f32', got {dtype!r}")
        dims, row = blob_geometry(path, shape, stride)
        raw_name = str(options.get("name") or path.stem)
        name = strip_report(raw_name)
        meta = {"raw_name": raw_name, "stride": row, "q12": q12 and dtype == "s32", "dtype": dtype}

        def load() -> np.ndarray:
            return read_blob(path, shape, stride, q12, dtype)

        tensor = Tensor(name=name, shape=dims, dtype="float32", loader=load, layout="NCHW", source=str(path), meta=meta)
        dmeta: dict[str, Any] = dict(DUMP_META, layout="NCHW", q12=meta["q12"])
        if options.get("cfg"):
            dmeta["mapper_cfg"] = cfg_header(options["cfg"])
        return Dump(tensors={name: tensor}, source=str(path), format=self.name, meta=dmeta, graph_outputs=[name])
