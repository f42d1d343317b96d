"""Calibration samples: PNG decoding (every filter type), preprocessing, directories, configs."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from netdiff.calibration import Preprocess, image_to_input, load_calibration, load_preprocess, read_png, resize_bilinear
from netdiff.errors import InputError
from netdiff.runners.base import InputSpec
from netdiff.samples import IMAGENET_MEAN, IMAGENET_STD, natural_image, preprocess

SPEC = InputSpec("input", (1, 3, 32, 32), "float32")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png(path: Path, pixels: np.ndarray, color: int = 2, palette: np.ndarray | None = None, depth: int = 8) -> None:
    """An independent PNG encoder using every filter type in turn (Sub/Up/Average/Paeth)."""
    h, w = pixels.shape[:2]
    raw = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).astype(np.int32)
    bpp = raw.shape[1] // w
    rows = []
    prev = np.zeros(raw.shape[1], np.int32)
    for y in range(h):
        kind = y % 5
        cur = raw[y]
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if kind == 0:
            f = cur
        elif kind == 1:
            f = cur - left
        elif kind == 2:
            f = cur - prev
        elif kind == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - ul
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - ul)
            f = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, ul))
        rows.append(bytes([kind]) + (f & 0xFF).astype(np.uint8).tobytes())
        prev = cur
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if palette is not None:
        data += _chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    data += _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")
    path.write_bytes(data)


def test_png_rgb_all_filters(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (11, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), image)


def test_png_palette_gray_alpha_and_16bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (4, 3))
    index = rng.integers(0, 4, (6, 5, 1), dtype=np.uint8)
    write_png(tmp_path / "p.png", index, color=3, palette=palette)
    np.testing.assert_array_equal(read_png(tmp_path / "p.png"), palette[index[..., 0]])
    ga = rng.integers(0, 256, (5, 4, 2), dtype=np.uint8)
    write_png(tmp_path / "ga.png", ga, color=4)
    np.testing.assert_array_equal(read_png(tmp_path / "ga.png"), ga)
    deep = rng.integers(0, 65536, (4, 3, 3)).astype(np.uint16)
    write_png(tmp_path / "d.png", deep, depth=16)
    np.testing.assert_array_equal(read_png(tmp_path / "d.png"), (deep >> 8).astype(np.uint8))


def test_bad_png_is_one_line_error(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:40])
    with pytest.raises(InputError, match="cut.png"):
        read_png(tmp_path / "cut.png")
    (tmp_path / "x.png").write_bytes(b"GIF89a....")
    with pytest.raises(InputError, match="not a PNG"):
        read_png(tmp_path / "x.png")


def test_torchvision_recipe_matches_samples_preprocess() -> None:
    image = natural_image(32, 32, seed=4)
    spec = Preprocess(scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    np.testing.assert_allclose(image_to_input(image, SPEC, spec), preprocess(image), atol=1e-6)
    bgr = image_to_input(image, InputSpec("x", (1, 32, 32, 3), "float32"), Preprocess(channel_order="bgr"))
    np.testing.assert_array_equal(bgr[0], image[..., ::-1].astype(np.float32))


def test_resize_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    image = natural_image(40, 52, seed=2).astype(np.float32)
    np.testing.assert_allclose(resize_bilinear(image, (32, 32)), cv2.resize(image, (32, 32)), atol=1e-3)


def test_calibration_directories(tmp_path: Path) -> None:
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "a.npy", np.zeros((3, 32, 32), np.float32))  # batch dim added
    np.save(npy / "b.npy", np.ones((4, 3, 32, 32), np.float32))  # 4 stacked samples
    samples = load_calibration(npy, [SPEC])
    assert len(samples) == 5 and all(s["input"].shape == (1, 3, 32, 32) for s in samples)
    assert len(load_calibration(npy, [SPEC], limit=2)) == 2
    png = tmp_path / "png"
    png.mkdir()
    write_png(png / "i.png", natural_image(64, 48, seed=3))
    (tmp_path / "pre.json").write_text(json.dumps({"preprocess": {"scale": 0.00392156862745098,
                                                                 "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}))
    (sample,) = load_calibration(png, [SPEC], load_preprocess(tmp_path / "pre.json"))
    assert sample["input"].shape == (1, 3, 32, 32) and abs(float(sample["input"].mean())) < 3
    multi = tmp_path / "multi"
    multi.mkdir()
    np.savez(multi / "s.npz", a=np.zeros((1, 2), np.float32), b=np.ones((1, 3), np.float32))
    specs = [InputSpec("a", (1, 2), "float32"), InputSpec("b", (1, 3), "float32")]
    assert load_calibration(multi, specs)[0]["b"].sum() == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no samples"):
        load_calibration(tmp_path / "empty", [SPEC])


def test_config_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"mean": [1], "colour": "rgb"}')
    with pytest.raises(InputError, match="colour"):
        load_preprocess(tmp_path / "bad.json")
    (tmp_path / "p.toml").write_text('[preprocess]\nsize = [24, 24]\nchannel_order = "bgr"\n')
    assert load_preprocess(tmp_path / "p.toml") == Preprocess(size=(24, 24), channel_order="bgr")
    with pytest.raises(InputError, match="std"):
        Preprocess.from_mapping({"std": [0]})


def test_jpeg_without_pillow_says_what_to_do(tmp_path: Path) -> None:
    try:
        import PIL  # noqa: F401
        pytest.skip("Pillow is installed")
    except ImportError:
        pass
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(InputError, match="Pillow"):
        load_calibration(tmp_path, [SPEC])
