"""Activations, Power/Exp/Log, Eltwise, PReLU, BatchNorm, Scale, Bias, Normalize, MVN vs Caffe formulas."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_testkit import one_layer

RNG = np.random.default_rng(7)
SHAPE = (2, 3, 4, 5)


def close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


UNARY = [
    ('type: "ReLU"', lambda x: np.maximum(x, 0)),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.maximum(x, 0) + 0.1 * np.minimum(x, 0)),
    ('type: "Sigmoid"', lambda x: 1 / (1 + np.exp(-x))),
    ('type: "TanH"', np.tanh),
    ('type: "AbsVal"', np.abs),
    ('type: "BNLL"', lambda x: np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))),
    ('type: "ELU" elu_param { alpha: 0.5 }', lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    ('type: "Exp"', np.exp),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2.0 ** (1 + 0.5 * x)),
    ('type: "Log" log_param { shift: 30 }', lambda x: np.log(30 + x)),
    ('type: "Log" log_param { base: 10 scale: 2 shift: 30 }', lambda x: np.log10(30 + 2 * x)),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }', lambda x: (3 + 0.5 * x) ** 2),
    ('type: "Power" power_param { power: 0.5 shift: 10 }', lambda x: np.sqrt(10 + x)),
    ('type: "Power" power_param { scale: 0 shift: 2 power: 3 }', lambda x: np.full_like(x, 8.0)),
    ('type: "Power"', lambda x: x),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', lambda x: x),
    ('type: "Threshold" threshold_param { threshold: 0.2 }', lambda x: (x > 0.2).astype(np.float64)),
    ('type: "Clip" clip_param { min: -0.5 max: 0.7 }', lambda x: np.clip(x, -0.5, 0.7)),
    ('type: "ReLU6"', lambda x: np.clip(x, 0, 6)),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x / (1 + np.exp(-1.5 * x))),
]


@pytest.mark.parametrize("body,ref", UNARY, ids=[u[0] for u in UNARY])
def test_unary(tmp_path, body, ref):
    x = RNG.standard_normal(SHAPE) * 3
    dump, feeds = one_layer(tmp_path, SHAPE, body, x=x)
    close(dump["L"].load(), ref(feeds["data"].astype(np.float64)))


@pytest.mark.parametrize("body,ref", [
    ("eltwise_param { operation: SUM }", lambda a, b, c: a + b + c),
    ("eltwise_param { operation: SUM coeff: 1 coeff: -2 coeff: 0.5 }", lambda a, b, c: a - 2 * b + 0.5 * c),
    ("", lambda a, b, c: a + b + c),
    ("eltwise_param { operation: PROD }", lambda a, b, c: a * b * c),
    ("eltwise_param { operation: MAX }", lambda a, b, c: np.maximum(np.maximum(a, b), c)),
])
def test_eltwise(tmp_path, body, ref):
    extra = {"b": SHAPE, "c": SHAPE}
    dump, feeds = one_layer(tmp_path, SHAPE, f'type: "Eltwise" {body}', bottoms=("data", "b", "c"),
                            extra_inputs=extra)
    close(dump["L"].load(), ref(feeds["data"], feeds["b"], feeds["c"]))


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(tmp_path, shared):
    slope = RNG.standard_normal(1 if shared else 3)
    body = f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}'
    dump, feeds = one_layer(tmp_path, SHAPE, body, [slope])
    x = feeds["data"]
    s = slope.reshape(1, -1, 1, 1)
    close(dump["L"].load(), np.maximum(x, 0) + s * np.minimum(x, 0))


@pytest.mark.parametrize("factor", [1.0, 4.5, 0.0])
def test_batchnorm_global_stats(tmp_path, factor):
    mean, var = RNG.standard_normal(3) * factor, RNG.random(3) * 2 * factor
    body = 'type: "BatchNorm" batch_norm_param { eps: 0.001 }'
    dump, feeds = one_layer(tmp_path, SHAPE, body, [mean, var, [factor]])
    f = 0.0 if factor == 0 else 1.0 / factor
    m, v = (mean * f).reshape(1, 3, 1, 1), (var * f).reshape(1, 3, 1, 1)
    close(dump["L"].load(), (feeds["data"] - m) / np.sqrt(v + 0.001))


def test_batchnorm_batch_stats(tmp_path):
    body = 'type: "BatchNorm" batch_norm_param { use_global_stats: false }'
    dump, feeds = one_layer(tmp_path, SHAPE, body, [np.zeros(3), np.ones(3), [1.0]])
    x = feeds["data"].astype(np.float64)
    m = x.mean(axis=(0, 2, 3), keepdims=True)
    v = ((x - m) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    close(dump["L"].load(), (x - m) / np.sqrt(v + 1e-5))


@pytest.mark.parametrize("axis,num_axes,fshape", [(1, 1, (3,)), (1, 2, (3, 4)), (0, -1, SHAPE), (-1, 1, (5,)),
                                                  (2, 0, ())])
@pytest.mark.parametrize("bias", [False, True])
def test_scale_blobs(tmp_path, axis, num_axes, fshape, bias):
    gamma, beta = RNG.standard_normal(fshape), RNG.standard_normal(fshape)
    body = f'type: "Scale" scale_param {{ axis: {axis} num_axes: {num_axes} bias_term: {str(bias).lower()} }}'
    dump, feeds = one_layer(tmp_path, SHAPE, body, [gamma, beta] if bias else [gamma])
    a = axis % 4 if fshape else 0
    bshape = fshape + (1,) * (4 - a - len(fshape))
    ref = feeds["data"] * gamma.reshape(bshape) + (beta.reshape(bshape) if bias else 0)
    close(dump["L"].load(), ref)


def test_scale_and_bias_second_bottom(tmp_path):
    beta = RNG.standard_normal((3, 4))
    body = 'type: "Scale" scale_param { axis: 1 bias_term: true }'
    dump, feeds = one_layer(tmp_path / "s", SHAPE, body, [beta], bottoms=("data", "g"), extra_inputs={"g": (3, 4)})
    close(dump["L"].load(), feeds["data"] * feeds["g"][None, :, :, None] + beta[None, :, :, None])
    dump, feeds = one_layer(tmp_path / "b", SHAPE, 'type: "Bias" bias_param { axis: 2 }', bottoms=("data", "g"),
                            extra_inputs={"g": (4, 5)})
    close(dump["L"].load(), feeds["data"] + feeds["g"][None, None])
    bias = RNG.standard_normal(3)
    dump, feeds = one_layer(tmp_path / "c", SHAPE, 'type: "Bias"', [bias])
    close(dump["L"].load(), feeds["data"] + bias.reshape(1, 3, 1, 1))


@pytest.mark.parametrize("across,shared", [(True, True), (False, False), (False, True), (True, False)])
def test_normalize(tmp_path, across, shared):
    scale = RNG.random(1 if shared else 3) * 10
    body = (f'type: "Normalize" norm_param {{ across_spatial: {str(across).lower()} '
            f'channel_shared: {str(shared).lower()} eps: 0.01 }}')
    dump, feeds = one_layer(tmp_path, SHAPE, body, [scale])
    x = feeds["data"].astype(np.float64)
    n, c, h, w = x.shape
    ref = np.zeros_like(x)
    for i in range(n):
        if across:
            ref[i] = x[i] / np.sqrt((x[i] ** 2).sum() + 0.01)
        else:
            for p in range(h):
                for q in range(w):
                    ref[i, :, p, q] = x[i, :, p, q] / np.sqrt((x[i, :, p, q] ** 2).sum() + 0.01)
    close(dump["L"].load(), ref * (scale[0] if shared else scale.reshape(1, 3, 1, 1)))


@pytest.mark.parametrize("across,variance", [(False, True), (True, True), (False, False)])
def test_mvn(tmp_path, across, variance):
    body = (f'type: "MVN" mvn_param {{ across_channels: {str(across).lower()} '
            f'normalize_variance: {str(variance).lower()} }}')
    dump, feeds = one_layer(tmp_path, SHAPE, body)
    x = feeds["data"].astype(np.float64)
    axes = (1, 2, 3) if across else (2, 3)
    centred = x - x.mean(axis=axes, keepdims=True)
    ref = centred / (np.sqrt((centred ** 2).mean(axis=axes, keepdims=True)) + 1e-9) if variance else centred
    close(dump["L"].load(), ref)
