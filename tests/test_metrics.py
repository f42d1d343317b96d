"""Metrics against straightforward numpy formulas, including the degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netdiff.metrics import EPS, KL_FLOOR, channel_cosines, compute_metrics


def naive(r: np.ndarray, x: np.ndarray) -> dict[str, float]:
    r = r.astype(np.float64).ravel()
    x = x.astype(np.float64).ravel()
    d = x - r
    big = np.abs(r) > EPS
    rel = np.where(big, np.abs(x / np.where(big, r, 1) - 1), 0)

    def norm(v):
        lo, hi = v.min(), v.max()
        p = (v - lo) / (hi - lo) if hi > lo else v
        p = np.maximum(p, KL_FLOOR)
        return p / p.sum()

    p, q = norm(x), norm(r)
    return {
        "cosine": float(np.sum(r * x) / (np.linalg.norm(r) * np.linalg.norm(x))),
        "max_abs": float(np.max(np.abs(d))),
        "mean_abs": float(np.mean(np.abs(d))),
        "rmse": float(np.sqrt(np.mean(d ** 2))),
        "rel_l2": float(np.linalg.norm(d) / np.linalg.norm(r)),
        "sqnr_db": float(20 * np.log10(np.linalg.norm(r) / np.linalg.norm(d))),
        "max_rel": float(rel[big].max()),
        "mean_rel": float(rel.sum() / rel.size),
        "kl": float(np.sum(p * np.log(p / q))),
        "ref_min": float(r.min()), "ref_max": float(r.max()), "ref_mean": float(r.mean()), "ref_std": float(r.std()),
        "target_min": float(x.min()), "target_max": float(x.max()),
        "target_mean": float(x.mean()), "target_std": float(x.std()),
    }


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 17, 19), (1, 300, 301)])
@pytest.mark.parametrize("chunk", [64, 1 << 16])
@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-9), (np.float32, 3e-6)])
def test_metrics_match_naive_formulas(shape, chunk, dtype, rel):
    rng = np.random.default_rng(sum(shape))
    r = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    x = (r + 0.1 * rng.standard_normal(shape)).astype(dtype)
    m = compute_metrics(r, x, chunk_elements=chunk)
    expected = naive(r, x)
    for key, value in expected.items():
        tolerance = 1e-6 if key == "kl" and dtype == np.float32 else 1e-12  # msaccucmp prints 6 decimals
        assert getattr(m, key) == pytest.approx(value, rel=rel, abs=tolerance), key
    assert 1 - m.cosine == pytest.approx(1 - expected["cosine"], rel=100 * rel)
    assert m.count == m.finite_count == r.size
    assert m.notes == ()


def test_metrics_on_strided_views_equal_contiguous():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((2, 8, 9, 4)).astype(np.float32)
    x = r + 0.01
    view = x.transpose(0, 3, 1, 2)
    m1 = compute_metrics(r.transpose(0, 3, 1, 2), view, chunk_elements=50)
    m2 = compute_metrics(np.ascontiguousarray(r.transpose(0, 3, 1, 2)), np.ascontiguousarray(view))
    assert m1.cosine == pytest.approx(m2.cosine, abs=1e-9)
    assert m1.rmse == pytest.approx(m2.rmse, rel=1e-6)


def test_cosine_near_one_keeps_precision():
    rng = np.random.default_rng(5)
    r = rng.standard_normal(200_000).astype(np.float32)
    x = r + np.float32(1e-3) * rng.standard_normal(r.size).astype(np.float32)
    m = compute_metrics(r, x)
    expected = naive(r, x)["cosine"]
    assert 1 - m.cosine == pytest.approx(1 - expected, rel=1e-3)


def test_identical_tensors():
    r = np.linspace(-1, 1, 100, dtype=np.float32)
    m = compute_metrics(r, r.copy())
    assert m.cosine == 1.0 and m.rel_l2 == 0.0 and m.max_abs == 0.0
    assert math.isinf(m.sqnr_db) and m.sqnr_db > 0
    assert m.kl == 0.0


def test_both_all_zero_is_cosine_one():
    z = np.zeros((4, 4), np.float32)
    m = compute_metrics(z, z)
    assert m.cosine == 1.0 and m.rel_l2 == 0.0 and m.max_abs == 0.0


def test_one_side_all_zero_is_nan_with_reason():
    r = np.ones(10, np.float32)
    m = compute_metrics(r, np.zeros(10, np.float32))
    assert math.isnan(m.cosine)
    assert any("target is all zero" in n for n in m.notes)
    m2 = compute_metrics(np.zeros(10, np.float32), r)
    assert math.isnan(m2.cosine) and math.isnan(m2.rel_l2)
    assert any("reference is all zero" in n for n in m2.notes)


def test_scalars():
    m = compute_metrics(np.array(2.0, np.float32), np.array(3.0, np.float32))
    assert m.cosine == pytest.approx(1.0)
    assert m.max_abs == pytest.approx(1.0)
    assert m.rel_l2 == pytest.approx(0.5)
    m = compute_metrics(np.array(2.0), np.array(-2.0))
    assert m.cosine == pytest.approx(-1.0)


def test_nan_and_inf_are_counted_and_skipped():
    rng = np.random.default_rng(1)
    r = rng.standard_normal(1000)
    x = r + 0.01
    x[[3, 10]] = np.nan
    x[20] = np.inf
    r[30] = -np.inf
    m = compute_metrics(r, x, chunk_elements=128)
    keep = np.isfinite(r) & np.isfinite(x)
    expected = naive(r[keep], x[keep])
    assert m.target_nan == 2 and m.target_inf == 1 and m.ref_inf == 1 and m.ref_nan == 0
    assert m.finite_count == 996 and m.count == 1000
    assert m.cosine == pytest.approx(expected["cosine"], rel=1e-9)
    assert m.kl == pytest.approx(expected["kl"], rel=1e-6)
    assert m.max_abs == pytest.approx(expected["max_abs"])
    assert any("skipped" in n for n in m.notes)


def test_all_nan_target_gives_nan_metrics_not_crash():
    r = np.ones(5)
    m = compute_metrics(r, np.full(5, np.nan))
    assert math.isnan(m.cosine) and m.target_nan == 5 and m.finite_count == 0


def test_empty_tensor():
    m = compute_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    assert m.count == 0 and math.isnan(m.cosine)
    assert "empty tensor" in m.notes


def test_relative_error_skips_reference_zeros():
    r = np.array([0.0, 2.0, 4.0])
    x = np.array([5.0, 3.0, 4.0])
    m = compute_metrics(r, x)
    assert m.max_rel == pytest.approx(0.5)
    assert m.mean_rel == pytest.approx(0.5 / 3)


def test_metrics_shape_mismatch_is_value_error():
    with pytest.raises(ValueError):
        compute_metrics(np.zeros(3), np.zeros(4))


def test_channel_cosines_flags_one_channel():
    rng = np.random.default_rng(2)
    r = rng.standard_normal((1, 4, 5, 5))
    x = r.copy()
    x[0, 2] = -x[0, 2]
    cos = channel_cosines(r, x)
    assert cos[2] == pytest.approx(-1.0)
    assert np.allclose(np.delete(cos, 2), 1.0)


def test_inputs_are_never_modified():
    rng = np.random.default_rng(3)
    r = rng.standard_normal(5000)
    x = r + 0.1
    r0, x0 = r.copy(), x.copy()
    compute_metrics(r, x, chunk_elements=256)
    assert np.array_equal(r, r0) and np.array_equal(x, x0)


def test_huge_float32_values_do_not_overflow_the_numpy_path(monkeypatch):
    import netdiff.metrics as metrics

    monkeypatch.setattr(metrics, "_fast", None)
    r = np.array([3e30, -2e30, 1e30, 5e29], np.float32)
    x = r * np.float32(1.01)
    m = compute_metrics(r, x)
    expected = naive(r, x)
    assert m.rel_l2 == pytest.approx(expected["rel_l2"], rel=1e-5)
    assert m.cosine == pytest.approx(1.0, abs=1e-6) and m.finite_count == 4 and m.notes == ()


# --- cosine: exact for scaled, opposite, orthogonal and nearly identical tensors, in both paths ---

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import netdiff.metrics as metrics_module  # noqa: E402

PATHS = ["kernel", "numpy"]


def _cosine_in(path: str, r: np.ndarray, x: np.ndarray) -> float:
    if path == "kernel" and not metrics_module.fast_available():
        pytest.skip("C kernel not built")
    saved = metrics_module._fast
    if path == "numpy":
        metrics_module._fast = None
    try:
        return compute_metrics(r, x).cosine
    finally:
        metrics_module._fast = saved


def _true_cosine(r: np.ndarray, x: np.ndarray) -> float:
    """Cosine of the stored values, float64 products summed exactly (math.fsum)."""
    r, x = r.astype(np.float64).ravel(), x.astype(np.float64).ravel()
    return math.fsum(r * x) / math.sqrt(math.fsum(r * r) * math.fsum(x * x))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("size", [10, 4099])
@pytest.mark.parametrize("k", [4096, 255, 1 / 256, -1, 3.7, -0.001, 1e6])
def test_cosine_of_scaled_tensors_is_exact(path, dtype, size, k):
    if dtype == np.float16 and abs(k) > 1e4:
        pytest.skip("k·r overflows float16")
    rng = np.random.default_rng(size)
    r = (rng.standard_normal(size) * (0.1 if dtype == np.float16 and abs(k) > 100 else 1)).astype(dtype)
    x = (r.astype(np.float64) * k).astype(dtype)
    cos = _cosine_in(path, r, x)
    assert abs(cos - _true_cosine(r, x)) <= 1e-9
    assert abs(cos - math.copysign(1.0, k)) <= 1e-3  # rounding of x to the dtype only


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", ["opposite", "orthogonal", "near", "very_near", "identical"])
def test_cosine_of_opposite_orthogonal_and_near_tensors(path, case):
    rng = np.random.default_rng(4)
    r = rng.standard_normal(6000).astype(np.float32)
    if case == "opposite":
        x = -r
    elif case == "orthogonal":
        x = r.copy()
        x[:3000], x[3000:] = r[3000:], -r[:3000]  # Σ r·x = Σ a·b − Σ b·a = 0
    elif case == "near":
        x = r + np.float32(1e-3) * rng.standard_normal(r.size).astype(np.float32)
    elif case == "very_near":
        x = r + np.float32(1e-6) * rng.standard_normal(r.size).astype(np.float32)
    else:
        x = r.copy()
    cos, truth = _cosine_in(path, r, x), _true_cosine(r, x)
    assert abs(cos - truth) <= 1e-12
    if case in ("near", "very_near"):  # 1 − cos keeps its relative precision (difference formula)
        r64, x64 = r.astype(np.float64), x.astype(np.float64)
        rr, xx, dd = math.fsum(r64 * r64), math.fsum(x64 * x64), math.fsum((x64 - r64) ** 2)
        exact = (dd - (math.sqrt(xx) - math.sqrt(rr)) ** 2) / (2 * math.sqrt(rr * xx))
        assert 1 - cos == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=2, max_size=60),
       k=st.floats(-1e7, 1e7, allow_nan=False).filter(lambda v: abs(v) > 1e-7),
       noise=st.sampled_from([0.0, 1e-7, 1e-4, 0.1, 10.0]), seed=st.integers(0, 2**16))
def test_cosine_property_scaled_and_perturbed(path, values, k, noise, seed):
    r = np.array(values, np.float32)
    assume(np.linalg.norm(r.astype(np.float64)) > 1e-12)  # norms ≤ eps count as all-zero (msaccucmp)
    rng = np.random.default_rng(seed)
    x = (r.astype(np.float64) * k + noise * abs(k) * np.abs(r).max() * rng.standard_normal(r.size)).astype(np.float32)
    assume(np.isfinite(x).all() and np.linalg.norm(x.astype(np.float64)) > 1e-12)
    cos = _cosine_in(path, r, x)
    assert abs(cos - _true_cosine(r, x)) <= 1e-9


def test_cosine_regimes_switch_on_the_difference_norm():
    rr, xx = 4.0, 4.0  # ‖r‖ = ‖x‖ = 2
    # ‖x − r‖ = 1 ≤ NEAR·2: difference formula; 1 − cos = 1 / 8
    assert metrics_module.cosine_from_sums(rr, xx, 1.0, 3.5) == pytest.approx(1 - 1 / 8, abs=1e-15)
    # x = 1000·r: direct formula, exactly 1
    assert metrics_module.cosine_from_sums(1.0, 1e6, 999.0 ** 2, 1000.0) == 1.0
