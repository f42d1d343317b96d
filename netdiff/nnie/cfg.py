"""Read an nnie_mapper ``.cfg`` file: ``[key] value`` lines, per-input keys repeated per input layer.

Both ``[instruction_name]`` (real cfgs) and ``[instructions_name]`` (the guide's table) are
accepted; ``#`` comments (whole-line or after whitespace) are stripped; a key whose value is on
the next line (``nnie_sim.ini`` style) is accepted too. Relative paths resolve against the cfg's
directory. Facts and sources: docs/nnie.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._input_files import read_capped
from netdiff.errors import InputError

#: Default ``[data_scale]``: 1/256, not 1/255.
DEFAULT_DATA_SCALE = 0.00390625
IMAGE_TYPES = {0: "S32 (feature map)", 1: "U8", 3: "YVU420SP", 5: "YVU422SP"}
NORM_TYPES = {0: "none", 1: "mean image", 2: "channel mean", 3: "data_scale",
              4: "(x - mean image) * data_scale", 5: "(x - channel mean) * data_scale"}
COMPILE_MODES = {0: "low-bandwidth (8-bit)", 1: "high-precision (16-bit)", 2: "user-specified (_hp layers 16-bit)"}
#: Keys given once per input layer (in prototxt order).
PER_INPUT_KEYS = ("image_list", "image_type", "norm_type", "mean_file")
_LINE = re.compile(r"^\[\s*([A-Za-z_][A-Za-z0-9_]*)\s*\]\s*(.*)$")
_ALIASES = {"instructions_name": "instruction_name"}


class MapperConfigError(InputError):
    """An nnie_mapper .cfg file (or the mean file it names) is malformed or unreadable."""


@dataclass(frozen=True)
class InputConfig:
    """Preprocessing of one network input, as the mapper applies it.

    Attributes:
        index: Input position (prototxt order).
        image_list: Calibration list path, if given.
        image_type: 0 S32, 1 U8, 3 YVU420SP, 5 YVU422SP.
        norm_type: 0..5 (see ``NORM_TYPES``).
        mean_file: Path of the mean file as written (resolved), or None for ``null``/absent.
        mean: Per-channel mean (norm 2/5), or the per-channel average of the mean image (norm 1/4).
        mean_image: The mean image (C, H, W) for norm 1/4.
        mean_error: Why the mean file could not be read, if it could not.
        data_scale: Scale applied after the mean (norm 3/4/5).
        data_scale_set: False when ``[data_scale]`` was absent (the 1/256 default applies).
        rgb_order: "RGB" or "BGR": the channel order of the network's image input.
    """

    index: int
    image_list: str | None
    image_type: int
    norm_type: int
    mean_file: str | None
    mean: tuple[float, ...] | None
    mean_image: np.ndarray | None = field(default=None, repr=False, compare=False)
    mean_error: str | None = None
    data_scale: float = DEFAULT_DATA_SCALE
    data_scale_set: bool = False
    rgb_order: str = "BGR"

    @property
    def subtracts_mean(self) -> bool:
        """True when the norm_type subtracts a mean."""
        return self.norm_type in (1, 2, 4, 5)

    @property
    def scale(self) -> float:
        """The multiplier actually applied (1.0 when norm_type does not scale)."""
        return self.data_scale if self.norm_type in (3, 4, 5) else 1.0


@dataclass(frozen=True)
class MapperConfig:
    """A parsed mapper cfg. ``raw`` keeps every key's values in file order."""

    path: str
    inputs: tuple[InputConfig, ...]
    compile_mode: int = 0
    internal_stride: int = 16
    instruction_name: str = "inst"
    prototxt_file: str | None = None
    caffemodel_file: str | None = None
    net_type: int = 0
    batch_num: int = 256
    sparse_rate: float = 0.0
    is_simulation: int = 0
    log_level: int = 0
    raw: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rgb_order(self) -> str:
        """RGB_order of the first input."""
        return self.inputs[0].rgb_order if self.inputs else "BGR"

    @property
    def data_scale(self) -> float:
        """data_scale of the first input."""
        return self.inputs[0].data_scale if self.inputs else DEFAULT_DATA_SCALE

    def bits_for(self, layer: str = "") -> int:
        """Quantization bits of a layer: 16 in compile_mode 1, or in mode 2 for names ending ``_hp``."""
        if self.compile_mode == 1 or (self.compile_mode == 2 and layer.endswith("_hp")):
            return 16
        return 8

    def header(self) -> dict[str, Any]:
        """Facts for a report header (JSON-friendly)."""
        head: dict[str, Any] = {
            "cfg": self.path,
            "compile_mode": f"{self.compile_mode} ({COMPILE_MODES.get(self.compile_mode, '?')})",
            "internal_stride": self.internal_stride,
            "instruction_name": self.instruction_name,
            "is_simulation": self.is_simulation,
        }
        if self.sparse_rate:
            head["sparse_rate"] = self.sparse_rate
        for inp in self.inputs:
            prefix = f"input{inp.index}." if len(self.inputs) > 1 else ""
            head[prefix + "image_type"] = f"{inp.image_type} ({IMAGE_TYPES.get(inp.image_type, '?')})"
            head[prefix + "norm_type"] = f"{inp.norm_type} ({NORM_TYPES.get(inp.norm_type, '?')})"
            head[prefix + "RGB_order"] = inp.rgb_order
            head[prefix + "data_scale"] = inp.data_scale if inp.data_scale_set else f"{inp.data_scale} (default 1/256)"
            if inp.mean is not None:
                head[prefix + "mean"] = [round(m, 6) for m in inp.mean]
            if inp.mean_error:
                head[prefix + "mean_file"] = f"{inp.mean_file} ({inp.mean_error})"
        return head


def read_cfg(path: str | Path) -> MapperConfig:
    """Read and validate an nnie_mapper cfg file.

    Raises:
        MapperConfigError: Unreadable file, a malformed line, or an out-of-range value.
    """
    path = Path(path)
    try:
        text = read_capped(path, "mapper cfg", 4 * 2**20, MapperConfigError).decode("utf-8", "replace")
    except OSError as e:
        raise MapperConfigError(f"{path}: cannot read mapper cfg ({e.strerror})") from e
    return parse_cfg(text, str(path), base_dir=path.parent)


def parse_cfg(text: str, where: str = "<cfg>", base_dir: str | Path | None = None) -> MapperConfig:
    """Parse cfg text (see :func:`read_cfg`); paths resolve against ``base_dir`` when given."""
    raw = _entries(text, where)
    values: dict[str, list[tuple[int, str]]] = {}
    for lineno, key, value in raw:
        values.setdefault(key, []).append((lineno, value))

    def one(key: str, default: str | None) -> tuple[int, str] | None:
        got = values.get(key)
        return got[-1] if got else (None if default is None else (0, default))

    def integer(key: str, default: int, allowed: set[int] | range) -> int:
        item = one(key, str(default))
        return _int(item, key, allowed, where)

    n_inputs = max([len(values.get(k, [])) for k in PER_INPUT_KEYS] + [1])
    inputs = tuple(_input(i, values, where, base_dir) for i in range(n_inputs))
    name = one("instruction_name", "inst")
    return MapperConfig(
        path=where,
        inputs=inputs,
        compile_mode=integer("compile_mode", 0, {0, 1, 2}),
        internal_stride=integer("internal_stride", 16, {16, 32}),
        instruction_name=name[1] if name else "inst",
        prototxt_file=_path(one("prototxt_file", None), base_dir),
        caffemodel_file=_path(one("caffemodel_file", None), base_dir),
        net_type=integer("net_type", 0, {0, 1, 2}),
        batch_num=integer("batch_num", 256, range(0, 257)),
        sparse_rate=_float(one("sparse_rate", "0"), "sparse_rate", where, 0.0, 1.0),
        is_simulation=integer("is_simulation", 0, {0, 1}),
        log_level=integer("log_level", 0, {0, 1, 2, 3}),
        raw={k: tuple(v for _, v in vs) for k, vs in values.items()},
    )


def _entries(text: str, where: str) -> list[tuple[int, str, str]]:
    entries: list[tuple[int, str, str]] = []
    pending: tuple[int, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = _strip_comment(line).strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            if pending is not None:
                entries.append((pending[0], pending[1], line))
                pending = None
                continue
            raise MapperConfigError(f"{where}:{lineno}: expected '[key] value', got {line[:60]!r}")
        if pending is not None:
            entries.append((pending[0], pending[1], ""))
        key = _ALIASES.get(m.group(1), m.group(1))
        value = m.group(2).strip()
        if value:
            entries.append((lineno, key, value))
            pending = None
        else:
            pending = (lineno, key)
    if pending is not None:
        entries.append((pending[0], pending[1], ""))
    return entries


def _strip_comment(line: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith(("#", "//", ";")):
        return ""
    return re.split(r"\s#", line, maxsplit=1)[0]


def _int(item: tuple[int, str] | None, key: str, allowed: set[int] | range, where: str) -> int:
    lineno, value = item if item else (0, "")
    try:
        number = int(value.strip())
    except ValueError:
        raise MapperConfigError(f"{where}:{lineno}: [{key}] must be an integer, got {value!r}") from None
    if number not in allowed:
        shown = f"{allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range) else ", ".join(map(str, sorted(allowed)))
        raise MapperConfigError(f"{where}:{lineno}: [{key}] {number} is not one of {shown}")
    return number


def _float(item: tuple[int, str] | None, key: str, where: str, low: float, high: float) -> float:
    lineno, value = item if item else (0, "")
    try:
        number = float(_fraction(value))
    except ValueError:
        raise MapperConfigError(f"{where}:{lineno}: [{key}] must be a number, got {value!r}") from None
    if not (low <= number <= high) or number != number:
        raise MapperConfigError(f"{where}:{lineno}: [{key}] {number} is outside [{low}, {high}]")
    return number


def _fraction(value: str) -> float:
    value = value.strip()
    if "/" in value:
        num, den = value.split("/", 1)
        return float(num) / float(den)
    return float(value)


def _path(item: tuple[int, str] | None, base_dir: str | Path | None) -> str | None:
    if item is None or item[1].lower() in ("", "null", "none"):
        return None
    value = item[1].strip().strip('"')
    p = Path(value.replace("\\", "/"))
    if base_dir is not None and not p.is_absolute():
        p = Path(base_dir) / p
    return str(p)


def _pick(values: dict[str, list[tuple[int, str]]], key: str, index: int) -> tuple[int, str] | None:
    got = values.get(key)
    if not got:
        return None
    return got[index] if index < len(got) else got[-1]


def _input(index: int, values: dict[str, list[tuple[int, str]]], where: str,
           base_dir: str | Path | None) -> InputConfig:
    image_type = _int(_pick(values, "image_type", index) or (0, "1"), "image_type", {0, 1, 3, 5}, where)
    norm_type = _int(_pick(values, "norm_type", index) or (0, "0"), "norm_type", set(range(6)), where)
    scale_item = _pick(values, "data_scale", index)
    data_scale = (_float(scale_item, "data_scale", where, 1e-30, 3.4e38) if scale_item else DEFAULT_DATA_SCALE)
    order_item = _pick(values, "RGB_order", index) or _pick(values, "rgb_order", index)
    order = (order_item[1] if order_item else "BGR").strip().upper()
    if order not in ("RGB", "BGR"):
        raise MapperConfigError(f"{where}:{order_item[0] if order_item else 0}: [RGB_order] must be RGB or BGR, got {order!r}")
    list_item = _pick(values, "image_list", index)
    mean_item = _pick(values, "mean_file", index)
    mean_file = _path(mean_item, base_dir) if norm_type in (1, 2, 4, 5) else None
    mean, mean_image, error = None, None, None
    if norm_type in (1, 2, 4, 5):
        if mean_file is None:
            error = "norm_type needs a mean file, none given"
        else:
            try:
                mean, mean_image = load_mean(mean_file, norm_type)
            except InputError as e:
                error = str(e)
    return InputConfig(index=index, image_list=_path(list_item, base_dir), image_type=image_type,
                       norm_type=norm_type, mean_file=mean_file, mean=mean, mean_image=mean_image,
                       mean_error=error, data_scale=data_scale, data_scale_set=scale_item is not None,
                       rgb_order=order)


def load_mean(path: str | Path, norm_type: int) -> tuple[tuple[float, ...], np.ndarray | None]:
    """Load a mean file: per-channel text (norm 2/5) or a ``.binaryproto`` mean image (norm 1/4).

    Returns:
        (per-channel means, mean image (C, H, W) or None).
    """
    path = Path(path)
    if norm_type in (1, 4) or path.suffix.lower() == ".binaryproto":
        from netdiff.nnie.binaryproto import read_blob_proto

        image = read_blob_proto(path)
        while image.ndim > 3 and image.shape[0] == 1:
            image = image[0]
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise MapperConfigError(f"{path}: mean image must be (C, H, W), got shape {list(image.shape)}")
        return tuple(float(v) for v in image.reshape(image.shape[0], -1).mean(axis=1)), image
    try:
        text = read_capped(path, "mean file", 64 * 1024, MapperConfigError)
        lines = [ln.strip() for ln in text.decode("utf-8", "replace").splitlines()]
    except OSError as e:
        raise MapperConfigError(f"{path}: cannot read mean file ({e.strerror})") from e
    means = []
    for lineno, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        try:
            means.append(float(line.split()[0].rstrip(",")))
        except ValueError:
            raise MapperConfigError(f"{path}:{lineno}: expected one float per line, got {line[:40]!r}") from None
    if not means:
        raise MapperConfigError(f"{path}: mean file holds no values")
    return tuple(means), None
