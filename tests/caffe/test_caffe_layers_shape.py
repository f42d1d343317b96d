"""Shape, resize and SSD layers against numpy ports of the Caffe (and fork) code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from caffe_testkit import one_layer, run

RNG = np.random.default_rng(3)
SHAPE = (2, 6, 4, 5)


def close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_concat_axes(tmp_path):
    dump, f = one_layer(tmp_path / "a", SHAPE, 'type: "Concat"', bottoms=("data", "b"), extra_inputs={"b": (2, 3, 4, 5)})
    close(dump["L"].load(), np.concatenate([f["data"], f["b"]], axis=1))
    dump, f = one_layer(tmp_path / "b", SHAPE, 'type: "Concat" concat_param { axis: -1 }', bottoms=("data", "b"),
                        extra_inputs={"b": (2, 6, 4, 2)})
    close(dump["L"].load(), np.concatenate([f["data"], f["b"]], axis=3))


def test_slice_points_and_equal(tmp_path):
    dump, f = one_layer(tmp_path / "a", SHAPE, 'type: "Slice" slice_param { axis: 1 slice_point: 1 slice_point: 4 }',
                        tops=("a", "b", "c"))
    for i, (s, e) in enumerate([(0, 1), (1, 4), (4, 6)]):
        close(dump[f"L:{i}"].load(), f["data"][:, s:e])
        assert dump[f"L:{i}"].meta == {"node": "L", "output_index": i, "blob": "abc"[i]}
    dump, f = one_layer(tmp_path / "b", SHAPE, 'type: "Slice" slice_param { slice_dim: 2 }', tops=("a", "b"))
    close(dump["L:1"].load(), f["data"][:, :, 2:])


def test_split_flatten_reshape(tmp_path):
    dump, f = one_layer(tmp_path / "s", SHAPE, 'type: "Split"', tops=("a", "b"))
    close(dump["L:0"].load(), f["data"])
    close(dump["L:1"].load(), f["data"])
    dump, f = one_layer(tmp_path / "f", SHAPE, 'type: "Flatten" flatten_param { axis: 1 end_axis: 2 }')
    close(dump["L"].load(), f["data"].reshape(2, 24, 5))
    dump, f = one_layer(tmp_path / "r", SHAPE, 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 10 } }')
    close(dump["L"].load(), f["data"].reshape(2, 12, 10))
    body = 'type: "Reshape" reshape_param { shape { dim: 3 dim: 2 } axis: 1 num_axes: 1 }'
    dump, f = one_layer(tmp_path / "r2", SHAPE, body)
    close(dump["L"].load(), f["data"].reshape(2, 3, 2, 4, 5))
    body = 'type: "Reshape" reshape_param { shape { dim: -1 } axis: -2 }'  # flatten the last two axes
    dump, f = one_layer(tmp_path / "r3", SHAPE, body)
    close(dump["L"].load(), f["data"].reshape(2, 6, 4, 5))  # axis -2 of rank 4 -> start 3: replace [5] by [-1]
    body = 'type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: -1 } }'
    dump, f = one_layer(tmp_path / "r4", SHAPE, body)
    close(dump["L"].load(), f["data"].reshape(2, 6, 20))


def test_permute_crop_tile(tmp_path):
    dump, f = one_layer(tmp_path / "p", SHAPE, 'type: "Permute" permute_param { order: 0 order: 2 }')
    close(dump["L"].load(), f["data"].transpose(0, 2, 1, 3))
    dump, f = one_layer(tmp_path / "c", SHAPE, 'type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }',
                        bottoms=("data", "ref"), extra_inputs={"ref": (1, 1, 2, 3)})
    close(dump["L"].load(), f["data"][:, :, 1:3, 2:5])
    dump, f = one_layer(tmp_path / "c1", SHAPE, 'type: "Crop" crop_param { axis: 1 offset: 1 }',
                        bottoms=("data", "ref"), extra_inputs={"ref": (1, 2, 2, 3)})
    close(dump["L"].load(), f["data"][:, 1:3, 1:3, 1:4])
    dump, f = one_layer(tmp_path / "t", SHAPE, 'type: "Tile" tile_param { axis: 2 tiles: 3 }')
    close(dump["L"].load(), np.tile(f["data"], (1, 1, 3, 1)))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax(tmp_path, axis):
    dump, f = one_layer(tmp_path, SHAPE, f'type: "Softmax" softmax_param {{ axis: {axis} }}')
    e = np.exp(f["data"] - f["data"].max(axis=axis, keepdims=True))
    close(dump["L"].load(), e / e.sum(axis=axis, keepdims=True))


def argmax_ref(x, top_k, out_max_val, axis):
    """Port of BVLC argmax_layer.cpp: (value, index) pairs partially sorted with std::greater."""
    if axis is None:
        n = x.shape[0]
        flat = x.reshape(n, -1)
        out = np.zeros((n, 2 if out_max_val else 1, top_k, *([1] * max(x.ndim - 3, 0))))
        for i in range(n):
            pairs = sorted(((flat[i, j], j) for j in range(flat.shape[1])), reverse=True)[:top_k]
            for j, (v, idx) in enumerate(pairs):
                out[i, 0, j] = idx
                if out_max_val:
                    out[i, 1, j] = v
        return out
    moved = np.moveaxis(x, axis, -1)
    res = np.zeros(moved.shape[:-1] + (top_k,))
    for idx in np.ndindex(moved.shape[:-1]):
        pairs = sorted(((moved[idx][j], j) for j in range(moved.shape[-1])), reverse=True)[:top_k]
        res[idx] = [v if out_max_val else j for v, j in pairs]
    return np.moveaxis(res, -1, axis)


@pytest.mark.parametrize("top_k,out_max_val,axis", [(1, False, None), (3, True, None), (2, False, 1),
                                                    (2, True, 3), (1, False, 2)])
def test_argmax_with_ties(tmp_path, top_k, out_max_val, axis):
    x = RNG.integers(0, 3, SHAPE).astype(np.float32)  # many ties: Caffe picks the larger index
    body = f'type: "ArgMax" argmax_param {{ top_k: {top_k} out_max_val: {str(out_max_val).lower()}'
    body += (f" axis: {axis} }}" if axis is not None else " }")
    dump, f = one_layer(tmp_path, SHAPE, body, x=x)
    close(dump["L"].load(), argmax_ref(x, top_k, out_max_val, axis))


def test_reorg_matches_darknet_loop(tmp_path):
    shape, s = (2, 8, 4, 6), 2
    dump, f = one_layer(tmp_path, shape, 'type: "Reorg" reorg_param { stride: 2 }')
    x = f["data"].ravel()
    b_, c, h, w = shape
    out = np.zeros_like(x)
    out_c = c // (s * s)
    for b in range(b_):  # darknet reorg_cpu(x, w, h, c, batch, stride, forward=0, out)
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * s + offset % s, j * s + offset // s
                    out[in_index] = x[w2 + w * s * (h2 + h * s * (c2 + out_c * b))]
    close(dump["L"].load(), out.reshape(b_, c * s * s, h // s, w // s))


def test_shuffle_channel(tmp_path):
    dump, f = one_layer(tmp_path, SHAPE, 'type: "ShuffleChannel" shuffle_channel_param { group: 3 }')
    x = f["data"]
    ref = np.stack([x[:, (c % 3) * 2 + c // 3] for c in range(6)], axis=1)
    close(dump["L"].load(), ref)


def interp_ref(x, ho, wo, beg=0, end=0):
    """Port of caffe_cpu_interp2 (align corners) over the cropped input."""
    x = x[:, :, -beg:x.shape[2] + end, -beg:x.shape[3] + end]
    h1, w1 = x.shape[2:]
    out = np.zeros(x.shape[:2] + (ho, wo))
    rh = (h1 - 1) / (ho - 1) if ho > 1 else 0.0
    rw = (w1 - 1) / (wo - 1) if wo > 1 else 0.0
    for i in range(ho):
        r = rh * i
        a = int(r)
        ap, al = (1 if a < h1 - 1 else 0), r - int(r)
        for j in range(wo):
            q = rw * j
            bb = int(q)
            bp, bl = (1 if bb < w1 - 1 else 0), q - int(q)
            out[:, :, i, j] = ((1 - al) * ((1 - bl) * x[:, :, a, bb] + bl * x[:, :, a, bb + bp])
                               + al * ((1 - bl) * x[:, :, a + ap, bb] + bl * x[:, :, a + ap, bb + bp]))
    return out


@pytest.mark.parametrize("param,size,crop", [("zoom_factor: 2", (7, 9), (0, 0)), ("shrink_factor: 2", (2, 3), (0, 0)),
                                             ("height: 6 width: 3", (6, 3), (0, 0)),
                                             ("zoom_factor: 3 pad_beg: -1 pad_end: -1", (1 + 0 * 2, 7), (-1, -1))])
def test_interp(tmp_path, param, size, crop):
    dump, f = one_layer(tmp_path, SHAPE, f'type: "Interp" interp_param {{ {param} }}')
    h_eff, w_eff = SHAPE[2] + sum(crop), SHAPE[3] + sum(crop)
    if "zoom" in param:
        size = (h_eff + (h_eff - 1) * 2 if "3" in param else h_eff * 2 - 1,
                w_eff + (w_eff - 1) * 2 if "3" in param else w_eff * 2 - 1)
    close(dump["L"].load(), interp_ref(f["data"], *size, *crop))


def test_upsample_nearest_and_unpool(tmp_path):
    dump, f = one_layer(tmp_path / "n", SHAPE, 'type: "Upsample" upsample_param { scale: 2 }')
    close(dump["L"].load(), f["data"].repeat(2, axis=2).repeat(2, axis=3))
    text = ('input: "data" input_shape { dim: 1 dim: 2 dim: 6 dim: 7 }\n'
            'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            'layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
            'upsample_param { scale: 2 upsample_h: 6 upsample_w: 7 } }\n')
    x = RNG.standard_normal((1, 2, 6, 7))
    dump = run(tmp_path / "u", text, {}, {"data": x})
    pooled, mask = dump["pool:0"].load(), dump["pool:1"].load()
    ref = np.zeros((1, 2, 6 * 7))
    for c in range(2):  # SegNet upsample_layer.cpp: top[mask[i]] = bottom[i]
        for i, (v, m) in enumerate(zip(pooled[0, c].ravel(), mask[0, c].ravel())):
            ref[0, c, int(m)] = v
    close(dump["up"].load(), ref.reshape(1, 2, 6, 7))
    assert (dump["up"].load() != 0).sum() == pooled.size


def prior_box_ref(fh, fw, ih, iw, min_sizes, max_sizes, ratios, flip, clip, variances, offset=0.5):
    """Port of weiliu89 prior_box_layer.cpp Forward_cpu."""
    ars = [1.0]
    for ar in ratios:
        if all(abs(ar - r) >= 1e-6 for r in ars):
            ars += [ar, 1 / ar] if flip else [ar]
    sw, sh = iw / fw, ih / fh
    out = []
    for h in range(fh):
        for w in range(fw):
            cx, cy = (w + offset) * sw, (h + offset) * sh
            for s, mn in enumerate(min_sizes):
                mn = int(mn)
                sizes = [(mn, mn)] + ([(math.sqrt(mn * int(max_sizes[s])),) * 2] if max_sizes else [])
                sizes += [(mn * math.sqrt(a), mn / math.sqrt(a)) for a in ars if abs(a - 1) >= 1e-6]
                for bw, bh in sizes:
                    out += [(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih]
    out = np.array(out)
    if clip:
        out = np.clip(out, 0, 1)
    var = np.tile(variances, len(out) // 4) if len(variances) == 4 else np.full(len(out), variances[0])
    return np.stack([out, var])[None]


def test_prior_box(tmp_path):
    body = ('type: "PriorBox" prior_box_param { min_size: 30.0 max_size: 60.0 aspect_ratio: 2 aspect_ratio: 3 '
            'aspect_ratio: 2 flip: true clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }')
    dump, f = one_layer(tmp_path / "a", (1, 4, 3, 5), body, bottoms=("data", "img"), extra_inputs={"img": (1, 3, 60, 100)})
    close(dump["L"].load(), prior_box_ref(3, 5, 60, 100, [30], [60], [2, 3, 2], True, True, [0.1, 0.1, 0.2, 0.2]))
    body = 'type: "PriorBox" prior_box_param { min_size: 10 min_size: 21.5 aspect_ratio: 2 flip: false }'
    dump, f = one_layer(tmp_path / "b", (1, 4, 2, 2), body, bottoms=("data", "img"), extra_inputs={"img": (1, 3, 32, 32)})
    close(dump["L"].load(), prior_box_ref(2, 2, 32, 32, [10, 21.5], [], [2], False, False, [0.1]))
