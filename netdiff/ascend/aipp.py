"""AIPP (Ascend image pre-processing): parse configs, simulate them, check them against the reference.

An AIPP config (``atc --insert_op_conf``) is protobuf text of ``domi.AippOpParams``::

    aipp_op { aipp_mode: static  input_format: RGB888_U8  rbuv_swap_switch: false
              min_chn_0: 123.675  var_reci_chn_0: 0.0171247538316637 ... }

The device applies, in order: R/B (or U/V) swap -> crop -> colour-space conversion (CSC) ->
``out = (x - mean_chn_i - min_chn_i) * var_reci_chn_i`` -> padding. Omitted fields default to
mean 0, min 0, var_reci 1.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._input_files import read_capped
from netdiff.errors import InputError, NetdiffError, UnsupportedOpError
from netdiff.types import Finding

#: Channels of each supported input format (the image is HWC uint8; YUV420SP may be NV12 2-D).
CHANNELS = {"RGB888_U8": 3, "YUV420SP_U8": 3, "YUV422SP_U8": 3, "YUV400_U8": 1, "XRGB8888_U8": 4,
            "ARGB8888_U8": 4, "AYUV444_U8": 4, "YUYV_U8": 3}
_YUV = {"YUV420SP_U8", "YUV422SP_U8", "YUV400_U8", "AYUV444_U8", "YUYV_U8"}
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([{}:])|("(?:[^"\\]|\\.)*")|([^\s{}:#"]+))')


class AippConfigError(NetdiffError):
    """An AIPP configuration cannot be parsed or is inconsistent."""


@dataclass(frozen=True)
class AippConfig:
    """One ``aipp_op`` block. Scalar fields hold the first value; ``fields`` keeps every value."""

    aipp_mode: str = "static"
    input_format: str = ""
    related_input_rank: int = 0
    csc_switch: bool = False
    rbuv_swap_switch: bool = False
    ax_swap_switch: bool = False
    src_image_size_w: int = 0
    src_image_size_h: int = 0
    crop: bool = False
    load_start_pos_w: int = 0
    load_start_pos_h: int = 0
    crop_size_w: int = 0
    crop_size_h: int = 0
    resize: bool = False
    padding: bool = False
    padding_sizes: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom
    matrix: tuple[tuple[int, ...], ...] | None = None
    input_bias: tuple[int, int, int] = (0, 0, 0)
    output_bias: tuple[int, int, int] = (0, 0, 0)
    mean_chn: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    min_chn: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    var_reci_chn: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    fields: dict[str, list[Any]] = field(default_factory=dict, compare=False)


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return token[1:-1]
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token


def _parse_blocks(text: str, source: str) -> list[dict[str, list[Any]]]:
    tokens = [m for m in _TOKEN.finditer(text) if m.group(0).strip() and not m.group(1)]
    values = [m.group(2) or m.group(3) or m.group(4) for m in tokens]
    blocks: list[dict[str, list[Any]]] = []
    i = 0
    while i < len(values):
        if values[i] != "aipp_op":
            raise AippConfigError(f"{source}: expected 'aipp_op {{', found {values[i]!r}")
        i += 1
        if i < len(values) and values[i] == ":":
            i += 1
        if i >= len(values) or values[i] != "{":
            raise AippConfigError(f"{source}: expected '{{' after aipp_op")
        i += 1
        block: dict[str, list[Any]] = {}
        while i < len(values) and values[i] != "}":
            name = values[i]
            if i + 2 >= len(values) or values[i + 1] != ":" or values[i + 2] in "{}:":
                raise AippConfigError(f"{source}: expected 'name : value' at {name!r}")
            block.setdefault(name, []).append(_scalar(values[i + 2]))
            i += 3
        if i >= len(values):
            raise AippConfigError(f"{source}: aipp_op block is not closed with '}}'")
        blocks.append(block)
        i += 1
    return blocks


def _config(block: dict[str, list[Any]], source: str) -> AippConfig:
    def one(name: str, default: Any) -> Any:
        return block[name][0] if block.get(name) else default

    def flag(name: str) -> bool:
        value = one(name, False)
        if isinstance(value, str):
            return value.lower() in ("true", "1", "on")
        return bool(value)

    matrix = None
    if any(k.startswith("matrix_r") for k in block):
        matrix = tuple(tuple(int(one(f"matrix_r{r}c{c}", 0)) for c in range(3)) for r in range(3))
    fmt = str(one("input_format", ""))
    if fmt and fmt not in CHANNELS:
        raise AippConfigError(f"{source}: input_format {fmt!r} is not supported (supported: {', '.join(CHANNELS)})")
    return AippConfig(
        aipp_mode=str(one("aipp_mode", "static")), input_format=fmt,
        related_input_rank=int(one("related_input_rank", 0)), csc_switch=flag("csc_switch"),
        rbuv_swap_switch=flag("rbuv_swap_switch"), ax_swap_switch=flag("ax_swap_switch"),
        src_image_size_w=int(one("src_image_size_w", 0)), src_image_size_h=int(one("src_image_size_h", 0)),
        crop=flag("crop"), load_start_pos_w=int(one("load_start_pos_w", 0)),
        load_start_pos_h=int(one("load_start_pos_h", 0)), crop_size_w=int(one("crop_size_w", 0)),
        crop_size_h=int(one("crop_size_h", 0)), resize=flag("resize"), padding=flag("padding"),
        padding_sizes=tuple(int(one(f"{s}_padding_size", 0)) for s in ("left", "right", "top", "bottom")),
        matrix=matrix, input_bias=tuple(int(one(f"input_bias_{i}", 0)) for i in range(3)),
        output_bias=tuple(int(one(f"output_bias_{i}", 0)) for i in range(3)),
        mean_chn=tuple(float(one(f"mean_chn_{i}", 0)) for i in range(4)),
        min_chn=tuple(float(one(f"min_chn_{i}", 0.0)) for i in range(4)),
        var_reci_chn=tuple(float(one(f"var_reci_chn_{i}", 1.0)) for i in range(4)),
        fields=block)


def parse_aipp_configs(text: str, source: str = "<aipp config>") -> list[AippConfig]:
    """Parse every ``aipp_op { ... }`` block of an AIPP config text (one per model input)."""
    return [_config(b, source) for b in _parse_blocks(text, source)]


def load_aipp_config(path: str | Path) -> AippConfig:
    """Read the first AIPP block from a config file or from an om JSON that embeds one.

    Raises:
        AippConfigError: No AIPP block, or it cannot be parsed.
    """
    path = Path(path)
    try:
        text = read_capped(path, "AIPP config", error=AippConfigError).decode("utf-8", "replace")
    except OSError as e:
        raise AippConfigError(f"{path}: cannot read ({e.strerror})") from e
    if text.lstrip().startswith("{"):
        from netdiff.ascend.fusion import FusionMap

        embedded = FusionMap.load(path).aipp_text()
        if embedded is None:
            raise AippConfigError(f"{path}: the om JSON has no embedded AIPP config (op attr 'aipp_config_path')")
        text = embedded
    configs = parse_aipp_configs(text, str(path))
    if not configs:
        raise AippConfigError(f"{path}: no 'aipp_op {{ ... }}' block found")
    return configs[0]


def _as_config(config: AippConfig | str | Path) -> AippConfig:
    if isinstance(config, AippConfig):
        return config
    if isinstance(config, str) and "aipp_op" in config:
        return parse_aipp_configs(config)[0]
    return load_aipp_config(config)


# ------------------------------------------------------------------ simulation

def _nv12_to_yuv444(image: np.ndarray, h: int, w: int) -> np.ndarray:
    y = image[:h]
    uv = image[h:h + h // 2].reshape(h // 2, w // 2, 2)
    uv = uv.repeat(2, axis=0).repeat(2, axis=1)
    return np.concatenate([y[..., None], uv], axis=2)


def simulate_aipp(image_uint8_hwc: np.ndarray, config: AippConfig | str | Path) -> np.ndarray:
    """Apply an AIPP config to a raw uint8 image the way the device does, in float32.

    Args:
        image_uint8_hwc: The image fed to the model on the device: HWC (or 1HWC) uint8; for
            YUV420SP_U8 an NV12 buffer of shape (H*3/2, W) is also accepted.
        config: An :class:`AippConfig`, AIPP config text, or a path (config file or om JSON).

    Returns:
        float32 NCHW array (N=1) in the AIPP output channel order.

    Raises:
        InputError: The image does not fit the config (dtype, channels, src_image_size).
        UnsupportedOpError: The config resizes (not simulated).
    """
    cfg = _as_config(config)
    img = np.asarray(image_uint8_hwc)
    if img.dtype != np.uint8:
        raise InputError(f"AIPP input must be uint8 (the raw device input), got {img.dtype}")
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    fmt = cfg.input_format or "RGB888_U8"
    if fmt == "YUV420SP_U8" and img.ndim == 2:
        h = img.shape[0] * 2 // 3
        img = _nv12_to_yuv444(img, h, img.shape[1])
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] != CHANNELS[fmt]:
        raise InputError(f"AIPP input_format {fmt} needs an HWC image with {CHANNELS[fmt]} channels, got shape "
                         f"{list(np.shape(image_uint8_hwc))}")
    if cfg.src_image_size_h and cfg.src_image_size_w and img.shape[:2] != (cfg.src_image_size_h, cfg.src_image_size_w):
        raise InputError(f"AIPP src_image_size is {cfg.src_image_size_w}x{cfg.src_image_size_h} (WxH) but the image is "
                         f"{img.shape[1]}x{img.shape[0]}")
    if cfg.resize:
        raise UnsupportedOpError("AIPP resize is not simulated; compare the Aipp op output instead")
    x = img.astype(np.int64)
    if cfg.rbuv_swap_switch and x.shape[2] >= 3:
        x = x[..., [2, 1, 0] + list(range(3, x.shape[2]))] if fmt not in _YUV else \
            x[..., [0, 2, 1] + list(range(3, x.shape[2]))]
    if cfg.ax_swap_switch and x.shape[2] == 4:  # RGBA -> ARGB / YUVA -> AYUV
        x = x[..., [3, 0, 1, 2]]
    if cfg.crop:
        top, left = cfg.load_start_pos_h, cfg.load_start_pos_w
        height = cfg.crop_size_h or x.shape[0] - top
        width = cfg.crop_size_w or x.shape[1] - left
        if top + height > x.shape[0] or left + width > x.shape[1]:
            raise InputError(f"AIPP crop {width}x{height} at ({left},{top}) does not fit the {x.shape[1]}x{x.shape[0]} image")
        x = x[top:top + height, left:left + width]
    if cfg.csc_switch:
        x = _csc(x, cfg, fmt)
    out = x.astype(np.float32)
    for i in range(min(out.shape[2], 4)):
        out[..., i] = (out[..., i] - np.float32(cfg.mean_chn[i]) - np.float32(cfg.min_chn[i])) * np.float32(cfg.var_reci_chn[i])
    if cfg.padding:
        left, right, top, bottom = cfg.padding_sizes
        out = np.pad(out, ((top, bottom), (left, right), (0, 0)))
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None])


def _csc(x: np.ndarray, cfg: AippConfig, fmt: str) -> np.ndarray:
    if cfg.matrix is None:
        raise AippConfigError("AIPP csc_switch is true but no matrix_r*c* coefficients are set")
    m = np.array(cfg.matrix, np.int64)
    three = x[..., :3] if x.shape[2] >= 3 else np.repeat(x, 3, axis=2)
    if fmt in _YUV:  # YUV -> RGB/BGR: (M . (yuv - input_bias)) >> 8
        res = (three - np.array(cfg.input_bias, np.int64)) @ m.T >> 8
    else:  # RGB -> YUV: (M . rgb) >> 8 + output_bias
        res = (three @ m.T >> 8) + np.array(cfg.output_bias, np.int64)
    return np.clip(res, 0, 255)


# ------------------------------------------------------------------ checking against the reference

def output_channel_order(config: AippConfig | str | Path) -> str:
    """The colour order AIPP hands the model: "RGB", "BGR", "YUV", "YVU" or "GRAY"."""
    cfg = _as_config(config)
    fmt = cfg.input_format or "RGB888_U8"
    if fmt == "YUV400_U8":
        return "GRAY"
    source = "YUV" if fmt in _YUV else "RGB"
    if cfg.rbuv_swap_switch:
        source = "YVU" if source == "YUV" else "BGR"
    if not cfg.csc_switch or cfg.matrix is None:
        return source
    if source in ("RGB", "BGR"):
        return "YUV"
    # YUV -> RGB: the row with the large V (Cr) weight and no U weight produces R.
    m = np.abs(np.array(cfg.matrix, np.float64))
    u, v = (1, 2) if source == "YUV" else (2, 1)
    first_is_r = m[0, v] > m[0, u]
    return "RGB" if first_is_r else "BGR"


def compare_preprocessing(aipp_config: AippConfig | str | Path, reference_mean, reference_std,
                          channel_order: str, *, scale: float = 1.0, rtol: float = 1e-3) -> list[Finding]:
    """Check an AIPP config against the reference model's preprocessing.

    Args:
        aipp_config: The AIPP config (object, text, config file or om JSON).
        reference_mean: Per-channel mean the reference subtracts, in the model's channel order.
        reference_std: Per-channel std the reference divides by, same order.
        channel_order: Channel order the model was trained with ("RGB" or "BGR").
        scale: The reference computes ``(pixel * scale - mean) / std``; use ``1/255`` when mean
            and std are given for [0, 1] images (e.g. 0.485 / 0.229).
        rtol: Relative tolerance on mean and scale.

    Returns:
        Findings (kinds ``input_channel_order``, ``input_normalization``, ``input_scale``), empty
        when AIPP reproduces the reference preprocessing.
    """
    cfg = _as_config(aipp_config)
    mean = np.atleast_1d(np.asarray(reference_mean, np.float64)) / scale
    std = np.atleast_1d(np.asarray(reference_std, np.float64))
    reci = scale / std
    findings: list[Finding] = []
    wanted = channel_order.upper()
    actual = output_channel_order(cfg)
    if wanted in ("RGB", "BGR") and actual in ("RGB", "BGR") and actual != wanted:
        if cfg.csc_switch:
            fix = ("set rbuv_swap_switch : " + ("false" if cfg.rbuv_swap_switch else "true") +
                   " (or swap matrix rows 0 and 2: matrix_r0c* <-> matrix_r2c*)")
        else:
            fix = "set rbuv_swap_switch : " + ("false" if cfg.rbuv_swap_switch else "true")
        findings.append(Finding(
            kind="input_channel_order", layer=None, severity="error",
            message=f"AIPP hands the model {actual} channels but the reference model expects {wanted}.",
            evidence={"aipp_output_order": actual, "reference_order": wanted, "input_format": cfg.input_format,
                      "rbuv_swap_switch": cfg.rbuv_swap_switch, "csc_switch": cfg.csc_switch},
            suggestion=fix))
    channels = min(len(mean), 4)
    bad_mean, bad_scale = [], []
    for i in range(channels):
        offset = cfg.mean_chn[i] + cfg.min_chn[i]
        if not np.isclose(offset, mean[i], rtol=rtol, atol=0.01):
            bad_mean.append(i)
        if i < len(reci) and not np.isclose(cfg.var_reci_chn[i], reci[i], rtol=rtol, atol=0):
            bad_scale.append(i)
    if bad_mean:
        parts = [f"min_chn_{i} should be {mean[i] - cfg.mean_chn[i]:.6g}" + (f" (with mean_chn_{i} = {cfg.mean_chn[i]:g})"
                 if cfg.mean_chn[i] else "") for i in bad_mean]
        swapped = channels >= 3 and all(np.isclose(cfg.mean_chn[i] + cfg.min_chn[i], mean[2 - i], rtol=rtol, atol=0.01)
                                        for i in range(3))
        findings.append(Finding(
            kind="input_normalization", layer=None, severity="error",
            message="AIPP subtracts a different per-channel mean than the reference"
                    + (" (the values are in reversed channel order)." if swapped else "."),
            evidence={"aipp_mean_plus_min": [cfg.mean_chn[i] + cfg.min_chn[i] for i in range(channels)],
                      "reference_mean": mean[:channels].tolist(), "channels": bad_mean},
            suggestion="; ".join(parts)))
    if bad_scale:
        parts = [f"var_reci_chn_{i} should be {reci[i]:.6f} (={scale:g}/{std[i]:g})" if scale != 1.0 else
                 f"var_reci_chn_{i} should be {reci[i]:.6f} (=1/{std[i]:g})" for i in bad_scale]
        looks_like_std = all(np.isclose(cfg.var_reci_chn[i], std[i] / scale, rtol=rtol) for i in bad_scale)
        findings.append(Finding(
            kind="input_scale", layer=None, severity="error",
            message="AIPP scales the input differently from the reference"
                    + (" (var_reci_chn holds the std itself, not its reciprocal)." if looks_like_std else "."),
            evidence={"aipp_var_reci_chn": list(cfg.var_reci_chn[:channels]), "reference_reciprocal_std": reci[:channels].tolist(),
                      "channels": bad_scale},
            suggestion="; ".join(parts)))
    return findings
