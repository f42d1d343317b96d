"""Calibration samples: ``.npy``/``.npz`` files or images with a preprocessing spec.

A calibration source is a directory (or one file):

* ``*.npy``: one sample per file for a single-input model; a file whose first dimension is
  larger than the model's batch holds several samples. Multi-input models: one sub-directory
  per input name, files paired in sorted order.
* ``*.npz``: one sample per file, one member per input name.
* ``*.png`` (decoded here, no dependency) and ``*.jpg``/``*.jpeg`` (needs Pillow): decoded to
  RGB, then resized, reordered, normalised and laid out as :class:`Preprocess` says.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._input_files import check_file_or_directory, parse_json, read_capped
from netdiff.errors import InputError
from netdiff.inputs import load_npz
from netdiff.runners.base import InputSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: ``x = (pixel * scale - mean) / std`` per channel.

    Attributes:
        size: (height, width) to resize to (bilinear); None: the model input's size.
        channel_order: "rgb" or "bgr" (Caffe/OpenCV models); "gray" for 1-channel inputs.
        mean: Per-channel (or single) mean, after ``scale``.
        std: Per-channel (or single) divisor.
        scale: Factor applied to 0..255 pixels first (1/255 for torchvision recipes).
        layout: "nchw" or "nhwc"; None: guessed from the input shape.
    """

    size: tuple[int, int] | None = None
    channel_order: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0
    layout: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str = "preprocessing") -> Preprocess:
        """Build from a JSON/TOML table; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = dict(data)
        try:
            if values.get("size") is not None:
                size = values["size"]
                values["size"] = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
            for key in ("mean", "std"):
                if key in values:
                    v = values[key]
                    values[key] = (float(v),) if isinstance(v, (int, float)) else tuple(float(x) for x in v)
            if "scale" in values:
                values["scale"] = float(values["scale"])
        except (TypeError, ValueError) as e:
            raise InputError(f"{what}: bad value ({e})") from None
        spec = cls(**values)
        spec.check(what)
        return spec

    def check(self, what: str = "preprocessing") -> None:
        """Raise InputError on an impossible spec."""
        if self.channel_order not in ("rgb", "bgr", "gray"):
            raise InputError(f"{what}: channel_order must be rgb, bgr or gray, not {self.channel_order!r}")
        if self.layout not in (None, "nchw", "nhwc"):
            raise InputError(f"{what}: layout must be nchw or nhwc, not {self.layout!r}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise InputError(f"{what}: size must be HEIGHT,WIDTH > 0, not {self.size}")
        if any(s == 0 for s in self.std):
            raise InputError(f"{what}: std must not be 0")


def load_preprocess(path: str | Path) -> Preprocess:
    """Read a preprocessing spec from a JSON or TOML file (a ``[preprocess]`` table or the top level)."""
    path = Path(path)
    try:
        text = read_capped(path, "preprocessing config", 16 * 2**20).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the preprocessing config is not UTF-8 text (byte {e.start})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = parse_json(text, str(path), what="preprocessing config")
    except ImportError:
        raise InputError(f"{path}: TOML needs Python 3.11; write the config as JSON") from None
    except ValueError as e:
        raise InputError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a table of preprocessing keys")
    return Preprocess.from_mapping(data.get("preprocess", data), str(path))


def load_calibration(source: str | Path, specs: Sequence[InputSpec], preprocess: Preprocess | None = None,
                     limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """Load calibration samples for a model with inputs ``specs``.

    Raises:
        InputError: The source is missing, empty, unreadable or does not fit the model.
    """
    from netdiff.inputs import fit_to_spec, load_array

    source = Path(source)
    if not source.exists():
        raise InputError(f"calibration: {source} does not exist")
    check_file_or_directory(source, "calibration source")
    by_name = {s.name: s for s in specs}
    samples: list[dict[str, np.ndarray]] = []
    if source.is_dir() and len(specs) > 1 and all((source / s.name).is_dir() for s in specs):
        columns = {s.name: _files(source / s.name, ARRAY_SUFFIXES + IMAGE_SUFFIXES) for s in specs}
        count = min(len(c) for c in columns.values())
        for i in range(count):
            samples.append({n: _one(columns[n][i], by_name[n], preprocess) for n in columns})
    else:
        files = [source] if source.is_file() else _files(source, ARRAY_SUFFIXES + IMAGE_SUFFIXES)
        for file in files:
            if file.suffix.lower() == ".npz" and len(specs) > 1:
                members = load_npz(file)
                missing = [n for n in by_name if n not in members]
                if missing:
                    raise InputError(f"{file}: no member for input(s) {', '.join(missing)}")
                samples.append({n: fit_to_spec(members[n], by_name[n]) for n in by_name})
            elif len(specs) != 1:
                raise InputError(f"calibration: the model has {len(specs)} inputs; use .npz files with one member per "
                                 f"input or one sub-directory per input ({', '.join(by_name)})")
            elif file.suffix.lower() in IMAGE_SUFFIXES:
                samples.append({specs[0].name: _one(file, specs[0], preprocess)})
            else:
                array = load_array(file, f"calibration {file.name}")
                samples.extend({specs[0].name: x} for x in _split(array, specs[0], file, fit_to_spec))
            if limit and len(samples) >= limit:
                break
    if not samples:
        raise InputError(f"calibration: no samples in {source} (expected {', '.join(ARRAY_SUFFIXES + IMAGE_SUFFIXES)})")
    return samples[:limit] if limit else samples


def _files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _split(array: np.ndarray, spec: InputSpec, file: Path, fit: Any) -> list[np.ndarray]:
    """One sample, or several stacked along a first dimension larger than the model's batch."""
    batch = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) else None
    if batch is not None and array.ndim == len(spec.shape) and array.shape[0] > batch and array.shape[0] % batch == 0:
        return [fit(array[i:i + batch], spec) for i in range(0, array.shape[0], batch)]
    return [fit(array, spec)]


def _one(file: Path, spec: InputSpec, preprocess: Preprocess | None) -> np.ndarray:
    from netdiff.inputs import fit_to_spec, load_array

    if file.suffix.lower() in IMAGE_SUFFIXES:
        return fit_to_spec(image_to_input(read_image(file), spec, preprocess or Preprocess()), spec)
    return fit_to_spec(load_array(file, f"calibration {file.name}"), spec)


def image_to_input(image: np.ndarray, spec: InputSpec, pre: Preprocess) -> np.ndarray:
    """RGB uint8 HWC -> model input (batch of 1) following ``pre``."""
    shape = spec.shape
    layout = pre.layout or ("nhwc" if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3) else "nchw")
    channels = shape[1] if layout == "nchw" else shape[-1]
    size = pre.size
    if size is None and len(shape) == 4:
        h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
        size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    x = image.astype(np.float32)
    if size is not None and tuple(x.shape[:2]) != tuple(size):
        x = resize_bilinear(x, size)
    if pre.channel_order == "gray" or channels == 1:
        x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif pre.channel_order == "bgr":
        x = x[..., ::-1]
    x = (x * pre.scale - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    x = x if layout == "nhwc" else x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None].astype(np.float32))


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HWC array with half-pixel centres (as OpenCV's INTER_LINEAR)."""
    h, w = image.shape[:2]
    oh, ow = size

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (c - lo).astype(np.float32)

    y0, y1, fy = coords(h, oh)
    x0, x1, fx = coords(w, ow)
    top = image[y0][:, x0] * (1 - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1 - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def read_image(path: str | Path) -> np.ndarray:
    """Decode a PNG (built in) or JPEG (Pillow) file to RGB uint8 HWC."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        image = read_png(path)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise InputError(f"{path}: JPEG images need Pillow (pip install 'netdiff[images]' or pillow); or use PNG or .npy "
                             "calibration files") from None
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise InputError(f"{path}: not a readable image ({e})") from None
    if image.shape[2] in (2, 4):  # drop alpha
        image = image[..., :-1]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def read_png(path: str | Path) -> np.ndarray:
    """Decode a non-interlaced 8/16-bit PNG to uint8 HWC (palette expanded; 16-bit cut to 8)."""
    path = Path(path)
    data = read_capped(path, "PNG image", 2**30)
    if not data.startswith(_PNG_SIGNATURE):
        raise InputError(f"{path}: not a PNG file (bad signature)")
    pos, header, palette, idat = 8, None, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            raise InputError(f"{path}: PNG chunk {kind!r} of {length} bytes runs past the end of the file")
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise InputError(f"{path}: PNG without IHDR or IDAT chunk")
    width, height, depth, color, _, _, interlace = header
    if color not in _CHANNELS or depth not in (8, 16) or interlace:
        raise InputError(f"{path}: unsupported PNG (bit depth {depth}, color type {color}, interlace {interlace}); "
                         "expected 8/16-bit non-interlaced")
    if color == 3 and palette is None:
        raise InputError(f"{path}: palette PNG without a PLTE chunk")
    bpp = _CHANNELS[color] * depth // 8
    stride = width * bpp
    expected = height * (stride + 1)
    raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    if len(raw) != expected:
        raise InputError(f"{path}: PNG image data holds {len(raw)} bytes, expected {expected} for {width}x{height}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    pixels = _unfilter(rows, bpp, path)
    if depth == 16:
        pixels = pixels.reshape(height, width, -1, 2)[..., 0]
    image = pixels.reshape(height, width, _CHANNELS[color])
    if color == 3:
        image = palette[np.minimum(image[..., 0], len(palette) - 1)]
    return image


def _unfilter(rows: np.ndarray, bpp: int, path: Path) -> np.ndarray:
    height, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = _sub(line, bpp)
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (3, 4):
            cur = line.copy()
            for x in range(0, stride, bpp):
                left = cur[x - bpp:x] if x else np.zeros(bpp, np.int32)
                up = prev[x:x + bpp]
                if kind == 3:
                    pred = (left + up) >> 1
                else:
                    ul = prev[x - bpp:x] if x else np.zeros(bpp, np.int32)
                    p = left + up - ul
                    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - ul)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
                cur[x:x + bpp] = (cur[x:x + bpp] + pred) & 0xFF
        else:
            raise InputError(f"{path}: PNG row {y} has unknown filter type {kind}")
        out[y] = cur
        prev = cur
    return out


def _sub(line: np.ndarray, bpp: int) -> np.ndarray:
    cur = line.reshape(-1, bpp) if len(line) % bpp == 0 else line[None]
    return (np.cumsum(cur, axis=0) & 0xFF).reshape(-1)
