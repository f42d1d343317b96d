"""What the NNIE actually sees: the mapper's input preprocessing, and a check against training.

For image inputs, per channel c in the cfg's ``[RGB_order]``: ``y = (x - mean_c) * data_scale``
(norm_type 5; 1..4 as in ``NORM_TYPES``), planar CHW, with x the 0..255 pixel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdiff.errors import InputError
from netdiff.nnie.cfg import DEFAULT_DATA_SCALE, InputConfig, MapperConfig
from netdiff.types import Finding

#: YUV->RGB matrices (the NNIE's own is undocumented; this is an explicit assumption).
YUV_MATRICES = {
    "bt601-limited": (16.0, 255.0 / 219.0, 255.0 / 224.0, 0.299, 0.114),
    "bt601-full": (0.0, 1.0, 1.0, 0.299, 0.114),
    "bt709-limited": (16.0, 255.0 / 219.0, 255.0 / 224.0, 0.2126, 0.0722),
    "bt709-full": (0.0, 1.0, 1.0, 0.2126, 0.0722),
}
_REL_TOL = 1e-3
_MEAN_TOL = 0.5


@dataclass(frozen=True)
class ReferencePreprocess:
    """How the reference (training) pipeline normalises an image.

    ``y_c = (x_c - mean_c) / std_c`` (or ``* scale``) with x in 0..255 and channels in
    ``channel_order``. Values all <= 1 for mean and std are read as 0..1 units (x 255).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    channel_order: str = "RGB"

    @classmethod
    def coerce(cls, value: ReferencePreprocess | Mapping[str, Any]) -> ReferencePreprocess:
        """Accept an instance or a dict with keys mean/std/scale/channel_order."""
        if isinstance(value, ReferencePreprocess):
            return value
        mean = value.get("mean")
        std = value.get("std")
        return cls(mean=tuple(float(v) for v in mean) if mean is not None else None,
                   std=tuple(float(v) for v in std) if std is not None else None,
                   scale=float(value["scale"]) if value.get("scale") is not None else None,
                   channel_order=str(value.get("channel_order", "RGB")).upper())

    def pixel_units(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, bool]:
        """Mean and std in 0..255 units, and whether a 0..1 -> 0..255 conversion was applied."""
        mean, std = self.mean, self.std
        unit = (mean is None or all(abs(m) <= 1.0 for m in mean)) and (std is None or all(s <= 1.0 for s in std))
        unit = unit and (mean is not None or std is not None) and self.scale is None
        if unit:
            mean = tuple(m * 255.0 for m in mean) if mean is not None else None
            std = tuple(s * 255.0 for s in std) if std is not None else None
        return mean, std, unit

    def scales(self, channels: int) -> tuple[float, ...]:
        """Per-channel multiplier applied after the mean."""
        _, std, _ = self.pixel_units()
        if std is not None:
            return tuple(1.0 / s for s in std)
        return (self.scale if self.scale is not None else 1.0,) * channels


def yuv_to_rgb(buffer: np.ndarray, height: int, width: int, kind: str = "420sp",
               stride: int | None = None, matrix: str = "bt601-limited") -> np.ndarray:
    """Convert a YVU420SP / YVU422SP buffer (Y plane, then interleaved V,U rows) to HWC uint8 RGB.

    Raises:
        InputError: Odd sizes, a short buffer or an unknown kind/matrix.
    """
    if kind not in ("420sp", "422sp"):
        raise InputError(f"YUV kind must be '420sp' or '422sp', got {kind!r}")
    if matrix not in YUV_MATRICES:
        raise InputError(f"unknown YUV matrix {matrix!r}; known: {', '.join(YUV_MATRICES)}")
    if width % 2 or (kind == "420sp" and height % 2):
        raise InputError(f"YVU{kind[:3]}SP needs even width{' and height' if kind == '420sp' else ''}, got {width}x{height}")
    stride = stride or width
    chroma_rows = height // 2 if kind == "420sp" else height
    data = np.asarray(buffer, dtype=np.uint8).ravel()
    need = (height + chroma_rows) * stride
    if data.size < need:
        raise InputError(f"YVU{kind[:3]}SP {width}x{height} (stride {stride}) needs {need} bytes, got {data.size}")
    y = data[:height * stride].reshape(height, stride)[:, :width].astype(np.float64)
    c = data[height * stride:need].reshape(chroma_rows, stride)[:, :width].astype(np.float64)
    v, u = c[:, 0::2], c[:, 1::2]
    v = np.repeat(v, 2, axis=1)
    u = np.repeat(u, 2, axis=1)
    if kind == "420sp":
        v, u = np.repeat(v, 2, axis=0), np.repeat(u, 2, axis=0)
    y0, ys, cs, kr, kb = YUV_MATRICES[matrix]
    kg = 1.0 - kr - kb
    yy = (y - y0) * ys
    pb, pr = (u - 128.0) * cs, (v - 128.0) * cs
    r = yy + 2.0 * (1.0 - kr) * pr
    b = yy + 2.0 * (1.0 - kb) * pb
    g = (yy - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def preprocess(image: np.ndarray, cfg: MapperConfig | InputConfig, *, image_order: str = "RGB",
               input_index: int = 0, yuv_size: tuple[int, int] | None = None, yuv_stride: int | None = None,
               yuv_matrix: str = "bt601-limited") -> np.ndarray:
    """Return the (1, C, H, W) float32 input the NNIE sees for a raw image.

    Args:
        image: HWC (or HW gray) uint8 pixels in ``image_order``; for image_type 3/5 a YVU
            semi-planar byte buffer with ``yuv_size=(height, width)``.
        cfg: The mapper cfg (or one of its inputs).
        image_order: Channel order of an HWC ``image`` ("RGB" or "BGR").
        input_index: Which cfg input when ``cfg`` is a MapperConfig.
        yuv_size: (height, width) of a YUV buffer.
        yuv_stride: Row stride in bytes of a YUV buffer (default: width).
        yuv_matrix: YUV->RGB conversion assumed for image_type 3/5 (see ``YUV_MATRICES``).
    """
    inp = cfg if isinstance(cfg, InputConfig) else _input(cfg, input_index)
    if inp.image_type == 0:
        raise InputError("image_type 0 takes an S32 feature map, not an image; feed float*4096 ints instead")
    if inp.image_type in (3, 5):
        if yuv_size is None:
            raise InputError("image_type 3/5 (YVU semi-planar) needs yuv_size=(height, width)")
        rgb = yuv_to_rgb(image, yuv_size[0], yuv_size[1], "420sp" if inp.image_type == 3 else "422sp",
                         yuv_stride, yuv_matrix)
        image, image_order = rgb, "RGB"
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise InputError(f"image must be HWC or HW, got shape {list(x.shape)}")
    planes = np.transpose(x.astype(np.float32), (2, 0, 1))
    if planes.shape[0] == 3 and image_order.upper() != inp.rgb_order:
        planes = planes[::-1]
    if inp.subtracts_mean:
        if inp.mean is None:
            raise InputError(f"cannot apply the cfg's mean: {inp.mean_error or 'no mean file'}")
        if inp.norm_type in (1, 4) and inp.mean_image is not None:
            if inp.mean_image.shape != planes.shape:
                raise InputError(f"mean image shape {list(inp.mean_image.shape)} differs from the input's {list(planes.shape)}")
            planes = planes - inp.mean_image.astype(np.float32)
        else:
            if len(inp.mean) != planes.shape[0]:
                raise InputError(f"mean file has {len(inp.mean)} values, the input has {planes.shape[0]} channels")
            planes = planes - np.asarray(inp.mean, np.float32)[:, None, None]
    planes = planes * np.float32(inp.scale)
    return np.ascontiguousarray(planes[None], dtype=np.float32)


def check_cfg(cfg: MapperConfig, reference: ReferencePreprocess | Mapping[str, Any],
              input_index: int = 0) -> list[Finding]:
    """Compare a cfg's preprocessing with the reference (training) preprocessing.

    Returns:
        Findings of kinds ``input_channel_order``, ``input_normalization`` and ``input_scale``
        (empty when they agree), each with a suggestion in cfg terms.
    """
    ref = ReferencePreprocess.coerce(reference)
    inp = _input(cfg, input_index)
    layer = None
    if inp.image_type == 0:
        if inp.norm_type != 0:
            return [Finding("input_normalization", layer, "error",
                            f"image_type 0 (S32 input) requires norm_type 0, the cfg has {inp.norm_type}",
                            {"image_type": 0, "norm_type": inp.norm_type}, "set [norm_type] 0")]
        return []
    findings: list[Finding] = []
    order = ref.channel_order.upper()
    if order not in ("RGB", "BGR"):
        raise InputError(f"reference channel order must be RGB or BGR, got {ref.channel_order!r}")
    if order != inp.rgb_order:
        findings.append(Finding(
            "input_channel_order", layer, "error",
            f"the cfg feeds {inp.rgb_order} but the model was trained on {order}: red and blue are swapped",
            {"cfg_RGB_order": inp.rgb_order, "reference_channel_order": order},
            f"set [RGB_order] {order} (and make the board feed {order} planar data)"))
    elif inp.rgb_order == "RGB" and inp.image_type == 1:
        findings.append(Finding(
            "input_channel_order", layer, "info",
            "[RGB_order] RGB with image_type 1: mapper 1.1.2.x documents that U8 board input must be BGR planar anyway",
            {"cfg_RGB_order": "RGB", "image_type": 1},
            "check the mapper version; with an old mapper feed BGR planar and reorder the mean lines"))
    mean, std, converted = ref.pixel_units()
    findings += _check_mean(inp, mean, order)
    findings += _check_scale(inp, ref, converted)
    return findings


def _check_mean(inp: InputConfig, mean: tuple[float, ...] | None, order: str) -> list[Finding]:
    ref_mean = tuple(mean) if mean is not None else None  # lines follow the (corrected) channel order
    wants_mean = ref_mean is not None and any(abs(m) > _MEAN_TOL for m in ref_mean)
    evidence: dict[str, Any] = {"norm_type": inp.norm_type, "reference_mean": ref_mean, "cfg_mean": inp.mean}
    lines = ", ".join(f"{m:g}" for m in ref_mean) if ref_mean else ""
    if not inp.subtracts_mean:
        if wants_mean:
            return [Finding("input_normalization", None, "error",
                            f"the cfg subtracts no mean (norm_type {inp.norm_type}) but training subtracts {_fmt(ref_mean)}",
                            evidence, f"set [norm_type] 5 and a [mean_file] with one value per line: {lines}")]
        return []
    if inp.mean is None:
        return [Finding("input_normalization", None, "warning",
                        f"cannot check the mean: {inp.mean_error}", evidence,
                        f"make [mean_file] readable (one value per line: {lines})" if lines else "")]
    if ref_mean is None:
        ref_mean = (0.0,) * len(inp.mean)
    if len(ref_mean) != len(inp.mean):
        return [Finding("input_normalization", None, "error",
                        f"the mean file has {len(inp.mean)} values, training uses {len(ref_mean)}", evidence,
                        f"write one mean per channel in [mean_file]: {lines}")]
    diff = max(abs(a - b) for a, b in zip(inp.mean, ref_mean))
    if diff <= _MEAN_TOL:
        return []
    evidence["max_abs_diff"] = diff
    if len(ref_mean) == 3 and max(abs(a - b) for a, b in zip(inp.mean, ref_mean[::-1])) <= _MEAN_TOL:
        return [Finding("input_normalization", None, "error",
                        f"the mean lines are in the reverse channel order: {_fmt(inp.mean)} vs {_fmt(ref_mean)} "
                        f"for {order} input", evidence,
                        f"write [mean_file] in {order} order, one value per line: {lines}")]
    return [Finding("input_normalization", None, "error",
                    f"the cfg mean {_fmt(inp.mean)} differs from the training mean {_fmt(ref_mean)}",
                    evidence, f"set [mean_file] to one value per line: {lines}")]


def _check_scale(inp: InputConfig, ref: ReferencePreprocess, converted: bool) -> list[Finding]:
    channels = len(inp.mean) if inp.mean else 3
    wanted = ref.scales(channels)
    cfg_scale = inp.scale
    evidence: dict[str, Any] = {"cfg_scale": cfg_scale, "reference_scales": wanted,
                                "data_scale_set": inp.data_scale_set, "norm_type": inp.norm_type}
    if converted:
        evidence["reference_units"] = "0..1 (converted to 0..255)"
    if max(wanted) / min(wanted) > 1 + _REL_TOL:
        avg = 1.0 / (sum(1.0 / s for s in wanted) / len(wanted))
        worst = max(abs(cfg_scale / s - 1) for s in wanted)
        evidence["max_rel_error"] = worst
        return [Finding("input_scale", None, "warning",
                        f"training scales channels differently ({_fmt(wanted, 6)}); [data_scale] is one scalar "
                        f"({cfg_scale:g}), worst channel off by {worst:.1%}", evidence,
                        f"set [data_scale] {avg:.7g} and fold the per-channel ratios (scale_c / {avg:.7g}) "
                        "into the first convolution's weights")]
    target = wanted[0]
    rel = cfg_scale / target - 1.0
    if abs(rel) <= _REL_TOL:
        return []
    evidence["ratio"] = cfg_scale / target
    hint = ""
    if inp.norm_type not in (3, 4, 5) and abs(target - 1.0) > _REL_TOL:
        suggestion = (f"set [norm_type] {5 if inp.subtracts_mean else 3} and [data_scale] {target:.7g}")
        hint = f" (norm_type {inp.norm_type} applies no scale)"
    elif math.isclose(target, 1 / 255, rel_tol=_REL_TOL) and math.isclose(cfg_scale, DEFAULT_DATA_SCALE, rel_tol=1e-6):
        suggestion = "data_scale should be 0.0039215 for /255 (0.00390625 is 1/256)"
        if not inp.data_scale_set:
            hint = " ([data_scale] is not set; the mapper's default is 1/256, not 1/255)"
    elif not inp.data_scale_set:
        suggestion = f"set [data_scale] {target:.7g}"
        hint = " ([data_scale] is not set, so the default 1/256 applies)"
    else:
        suggestion = f"set [data_scale] {target:.7g}"
    severity = "error" if abs(rel) > 0.05 else "warning"
    return [Finding("input_scale", None, severity,
                    f"the cfg scales the input by {cfg_scale:.7g}, training by {target:.7g} "
                    f"({rel:+.2%}){hint}", evidence, suggestion)]


def _input(cfg: MapperConfig, index: int) -> InputConfig:
    if not 0 <= index < len(cfg.inputs):
        raise InputError(f"{cfg.path}: input {index} does not exist (the cfg has {len(cfg.inputs)} input(s))")
    return cfg.inputs[index]


def _fmt(values: Sequence[float] | None, digits: int = 4) -> str:
    if values is None:
        return "none"
    return "[" + ", ".join(f"{v:.{digits}g}" for v in values) + "]"


def parse_values(text: str | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    """Parse ``"123.675,116.28,103.53"`` (commas or spaces; ``a/b`` fractions allowed).

    Raises:
        InputError: A value is not a number.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(float(v) for v in text)
    values = []
    for part in text.replace(",", " ").split():
        try:
            num, _, den = part.partition("/")
            values.append(float(num) / float(den) if den else float(num))
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{what}: {part!r} is not a number (expected e.g. 123.675,116.28,103.53)") from None
    if not values:
        raise InputError(f"{what}: no values given")
    return tuple(values)


def check_cfg_file(path: str, *, mean: str | Sequence[float] | None = None, std: str | Sequence[float] | None = None,
                   scale: str | float | None = None, channel_order: str = "RGB",
                   input_index: int = 0) -> tuple[MapperConfig, list[Finding]]:
    """Read a mapper cfg and check it against the training preprocessing (see :func:`check_cfg`).

    Raises:
        InputError: Bad cfg, bad values, or both ``std`` and ``scale`` given.
    """
    from netdiff.nnie.cfg import read_cfg

    if std is not None and scale is not None:
        raise InputError("give either --std or --scale, not both")
    scale_value = parse_values(str(scale), "--scale") if scale is not None else None
    if scale_value is not None and len(scale_value) != 1:
        raise InputError(f"--scale takes one number, got {len(scale_value)}")
    mean_v, std_v = parse_values(mean, "--mean"), parse_values(std, "--std")
    if std_v is not None and any(s <= 0 for s in std_v):
        raise InputError("--std values must be positive")
    if mean_v is not None and std_v is not None and len(std_v) not in (1, len(mean_v)):
        raise InputError(f"--mean has {len(mean_v)} values but --std has {len(std_v)}")
    if mean_v is not None and std_v is not None and len(std_v) == 1:
        std_v = std_v * len(mean_v)
    if channel_order.upper() not in ("RGB", "BGR"):
        raise InputError(f"--channel-order must be RGB or BGR, got {channel_order!r}")
    cfg = read_cfg(path)
    reference = ReferencePreprocess(mean=mean_v, std=std_v, scale=scale_value[0] if scale_value else None,
                                    channel_order=channel_order.upper())
    return cfg, check_cfg(cfg, reference, input_index)
