"""Convolution, Deconvolution, InnerProduct, Pooling and LRN against numpy ports of Caffe's loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from caffe_testkit import one_layer

RNG = np.random.default_rng(42)


def conv_ref(x, w, bias, stride, pad, dil, group):
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    out = np.zeros((n, co, oh, ow))
    cog = co // group
    for g in range(group):
        for o in range(g * cog, (g + 1) * cog):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[:, g * cig:(g + 1) * cig, i * stride[0]:i * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                               j * stride[1]:j * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                    out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + (bias[o] if bias is not None else 0)
    return out


def deconv_ref(x, w, bias, stride, pad, group):
    n, c, h, wd = x.shape
    _, cog, kh, kw = w.shape
    full = np.zeros((n, cog * group, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    cig = c // group
    for ci in range(c):
        g = ci // cig
        for i in range(h):
            for j in range(wd):
                full[:, g * cog:(g + 1) * cog, i * stride:i * stride + kh, j * stride:j * stride + kw] += (
                    x[:, ci, i, j][:, None, None, None] * w[ci][None])
    out = full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]
    return out + (bias[None, :, None, None] if bias is not None else 0)


def pool_ref(x, method, k, s, p, ceil=True):
    """Port of BVLC pooling_layer.cpp Forward_cpu (MAX and AVE) with its Reshape rule."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor
    ph, pw = (int(rnd((d + 2 * p[i] - k[i]) / s[i])) + 1 for i, d in enumerate((h, w)))
    if p[0] or p[1]:
        ph -= 1 if (ph - 1) * s[0] >= h + p[0] else 0
        pw -= 1 if (pw - 1) * s[1] >= w + p[1] else 0
    out = np.zeros((n, c, ph, pw))
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            out[:, :, i, j] = win.max(axis=(2, 3)) if method == "MAX" else win.sum(axis=(2, 3)) / size
    return out


def close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("group,dil,stride,pad,bias", [(1, 1, 1, 0, True), (2, 1, 2, 1, True), (4, 2, 1, 2, False),
                                                       (1, 2, 3, 1, True)])
def test_convolution(tmp_path, group, dil, stride, pad, bias):
    w = RNG.standard_normal((8, 4 // group, 3, 3))
    b = RNG.standard_normal(8)
    body = (f"type: \"Convolution\" convolution_param {{ num_output: 8 kernel_size: 3 stride: {stride} pad: {pad} "
            f"dilation: {dil} group: {group} bias_term: {str(bias).lower()} }}")
    dump, feeds = one_layer(tmp_path, (2, 4, 9, 10), body, [w, b] if bias else [w])
    close(dump["L"].load(), conv_ref(feeds["data"], w, b if bias else None, (stride,) * 2, (pad,) * 2, (dil,) * 2,
                                     group))
    assert dump["L"].op_type == "Convolution"


def test_convolution_rectangular_and_depthwise(tmp_path):
    w = RNG.standard_normal((6, 3, 2, 3))
    body = ("type: \"Convolution\" convolution_param { num_output: 6 kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0 "
            "stride_h: 2 stride_w: 1 }")
    dump, feeds = one_layer(tmp_path / "a", (1, 3, 7, 8), body, [w, np.zeros(6)])
    close(dump["L"].load(), conv_ref(feeds["data"], w, None, (2, 1), (1, 0), (1, 1), 1))
    wd = RNG.standard_normal((3, 1, 3, 3))
    body = "type: \"ConvolutionDepthwise\" convolution_param { num_output: 3 kernel_size: 3 pad: 1 bias_term: false }"
    dump, feeds = one_layer(tmp_path / "b", (1, 3, 5, 5), body, [wd])
    close(dump["L"].load(), conv_ref(feeds["data"], wd, None, (1, 1), (1, 1), (1, 1), 3))


@pytest.mark.parametrize("group,stride,pad", [(1, 2, 0), (2, 2, 1), (2, 3, 2)])
def test_deconvolution(tmp_path, group, stride, pad):
    w = RNG.standard_normal((4, 6 // group, 3, 3))
    b = RNG.standard_normal(6)
    body = (f"type: \"Deconvolution\" convolution_param {{ num_output: 6 kernel_size: 3 stride: {stride} pad: {pad} "
            f"group: {group} }}")
    dump, feeds = one_layer(tmp_path, (2, 4, 4, 5), body, [w, b])
    close(dump["L"].load(), deconv_ref(feeds["data"], w, b, stride, pad, group))


@pytest.mark.parametrize("axis,transpose", [(1, False), (2, False), (1, True), (-1, False)])
def test_inner_product(tmp_path, axis, transpose):
    shape = (2, 3, 4, 5)
    a = axis % 4
    k, n_out = math.prod(shape[a:]), 7
    w = RNG.standard_normal((k, n_out) if transpose else (n_out, k))
    b = RNG.standard_normal(n_out)
    body = (f"type: \"InnerProduct\" inner_product_param {{ num_output: {n_out} axis: {axis} "
            f"transpose: {str(transpose).lower()} }}")
    dump, feeds = one_layer(tmp_path, shape, body, [w, b])
    x2 = feeds["data"].reshape(math.prod(shape[:a]), k)
    ref = (x2 @ (w if transpose else w.T) + b).reshape(*shape[:a], n_out)
    close(dump["L"].load(), ref)


def test_inner_product_legacy_4d_blobs(tmp_path):
    from caffe_testkit import run

    w, b = RNG.standard_normal((1, 1, 5, 12)), RNG.standard_normal((1, 1, 1, 5))  # Caffe's old (1,1,N,K) layout
    text = ('input: "data" input_dim: 2 input_dim: 3 input_dim: 2 input_dim: 2\n'
            'layer { name: "L" type: "InnerProduct" bottom: "data" top: "L" inner_product_param { num_output: 5 } }')
    x = RNG.standard_normal((2, 3, 2, 2))
    dump = run(tmp_path, text, {"L": [w, b]}, {"data": x}, legacy=True)
    close(dump["L"].load(), x.reshape(2, 12) @ w.reshape(5, 12).T + b.reshape(5))


POOL_CASES = [  # (H, W, k, s, p): ceil and floor differ, clipped last windows, padding
    (5, 5, 2, 2, 1), (6, 7, 3, 2, 1), (7, 7, 3, 2, 1), (5, 6, 3, 3, 1), (13, 13, 3, 2, 0), (10, 11, 3, 3, 2),
    (8, 8, 2, 2, 0), (6, 6, 3, 2, 0),
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,k,s,p", POOL_CASES)
def test_pooling_ceil_and_padding(tmp_path, method, h, w, k, s, p):
    body = f"type: \"Pooling\" pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }}"
    dump, feeds = one_layer(tmp_path, (2, 3, h, w), body)
    close(dump["L"].load(), pool_ref(feeds["data"], method, (k, k), (s, s), (p, p)))


def test_pooling_ceil_differs_from_floor(tmp_path):
    body = "type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"
    dump, feeds = one_layer(tmp_path / "c", (1, 2, 6, 6), body)
    assert dump["L"].shape == (1, 2, 4, 4)  # ceil((6+2-3)/2)+1 = 4, floor would give 3
    body = "type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR }"
    dump, feeds = one_layer(tmp_path / "f", (1, 2, 6, 6), body)
    assert dump["L"].shape == (1, 2, 3, 3)
    close(dump["L"].load(), pool_ref(feeds["data"], "AVE", (3, 3), (2, 2), (1, 1), ceil=False))


def test_pooling_rectangular_global_and_mask(tmp_path):
    body = "type: \"Pooling\" pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 }"
    dump, feeds = one_layer(tmp_path / "r", (1, 2, 7, 6), body)
    close(dump["L"].load(), pool_ref(feeds["data"], "AVE", (3, 2), (2, 1), (1, 0)))
    for method in ("MAX", "AVE"):
        body = f"type: \"Pooling\" pooling_param {{ pool: {method} global_pooling: true }}"
        dump, feeds = one_layer(tmp_path / method, (2, 3, 5, 4), body)
        x = feeds["data"]
        close(dump["L"].load(), (x.max if method == "MAX" else x.mean)(axis=(2, 3), keepdims=True))
    body = "type: \"Pooling\" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"
    dump, feeds = one_layer(tmp_path / "m", (1, 2, 6, 7), body, tops=("out", "mask"))
    x = feeds["data"]
    values, mask = dump["L:0"].load(), dump["L:1"].load()
    close(values, pool_ref(x, "MAX", (3, 3), (2, 2), (1, 1)))
    assert mask.dtype == np.float32
    flat = x.reshape(1, 2, -1)
    picked = np.take_along_axis(flat, mask.reshape(1, 2, -1).astype(np.int64), axis=2).reshape(values.shape)
    close(picked, values)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn(tmp_path, region):
    size, alpha, beta, k = 3, 0.3, 0.75, 2.0
    body = (f"type: \"LRN\" lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} "
            f"norm_region: {region} }}")
    dump, feeds = one_layer(tmp_path, (2, 5, 4, 4), body)
    x = feeds["data"].astype(np.float64)
    ref = np.zeros_like(x)
    pre = (size - 1) // 2
    n, c, h, w = x.shape
    for ci in range(c):
        for i in range(h):
            for j in range(w):
                if region == "ACROSS_CHANNELS":
                    s = (x[:, max(0, ci - pre):min(c, ci + size - pre), i, j] ** 2).sum(axis=1)
                    ref[:, ci, i, j] = x[:, ci, i, j] * (k + alpha / size * s) ** -beta
                else:
                    s = (x[:, ci, max(0, i - pre):min(h, i + size - pre), max(0, j - pre):min(w, j + size - pre)]
                         ** 2).sum(axis=(1, 2))
                    ref[:, ci, i, j] = x[:, ci, i, j] * (1 + alpha * s / (size * size)) ** -beta
    close(dump["L"].load(), ref)
