"""The NNIE log quantizer against hand-computed values (docs/nnie.md, research notes §3)."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.nnie.logquant import RunningMax, flush_threshold, flushed_fraction, grid_top, log_quantize, to_q12

# 8-bit, top 255: L=16, floor(16*log2 255)=127 -> D = 2^(128/16) = 256.
#   levels 256*2^(k/16), k=-1..-128 (positive), -1..-127 (negative)
#   smallest positive level 256*2^-8 = 1.0, flush below 0.5
#   smallest negative level 256*2^(-127/16) = 2^(1/16) = 1.0442738, flush below 0.5221369
# 16-bit, top 255: L=128, floor(128*log2 255)=1023 -> D = 256; n=1408
#   smallest positive level 256*2^-11 = 0.125, flush below 0.0625
#   smallest negative level 0.125*2^(1/128) = 0.1256786, flush below 0.0628393
CASES_8 = [
    (255.0, 245.1464399),      # top element rounds down: k=-1 -> 256*2^(-1/16)
    (1000.0, 245.1464399),     # above the calibrated top: saturates at the top level
    (-1000.0, -245.1464399),
    (100.0, 98.7014928),       # 16*log2(100/256) = -21.70 -> k=-22 -> 256*2^(-22/16)
    (-100.0, -98.7014928),
    (128.0, 128.0),            # exactly on a level: 16*log2(0.5) = -16
    (1.0, 1.0),                # smallest positive level (k=-128)
    (0.51, 1.0),               # between half the smallest level and the smallest: clipped up
    (0.49, 0.0),               # below half the smallest level: flushed
    (-0.51, 0.0),              # negative side has one level fewer: flush threshold 0.5221
    (-0.53, -1.0442738),
    (0.0, 0.0),
]
CASES_16 = [
    (255.0, 254.6174524),      # 256*2^(-1/128)
    (100.0, 99.7762816),       # 128*log2(100/256) = -173.59 -> k=-174
    (0.07, 0.125),
    (0.06, 0.0),
    (-0.0627, 0.0),
    (-0.063, -0.1256786),
]


@pytest.mark.parametrize("x,expected", CASES_8)
def test_8bit_table(x, expected):
    assert log_quantize(np.array([x]), 255.0, 8)[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("x,expected", CASES_16)
def test_16bit_table(x, expected):
    assert log_quantize(np.array([x]), 255.0, 16)[0] == pytest.approx(expected, abs=1e-6)


def test_grid_top_is_strictly_above_the_max():
    assert grid_top(255.0, 8) == 256.0
    assert grid_top(256.0, 8) == pytest.approx(2 ** (129 / 16))   # a grid point itself moves up one step
    assert log_quantize(np.array([256.0]), 256.0, 8)[0] == pytest.approx(256.0)
    assert grid_top(0.0, 8) == grid_top(1e-6, 8)                   # only zeros: max set to 1e-6


def test_flush_thresholds():
    assert flush_threshold(255.0, 8) == pytest.approx(0.5)
    assert flush_threshold(255.0, 8, negative=True) == pytest.approx(0.5221368912)
    assert flush_threshold(255.0, 16) == pytest.approx(0.0625)


def test_rounding_switches_at_half_step_in_log_domain():
    d = 256.0
    switch = d * 2 ** (-21.5 / 16)
    below, above = log_quantize(np.array([switch * 0.9999, switch * 1.0001]), 255.0, 8)
    assert below == pytest.approx(d * 2 ** (-22 / 16))
    assert above == pytest.approx(d * 2 ** (-21 / 16))


def test_level_counts():
    x = np.linspace(-300, 300, 200001)
    y = log_quantize(x, 255.0, 8)
    assert len(np.unique(y[y > 0])) == 128
    assert len(np.unique(y[y < 0])) == 127
    y16 = log_quantize(x, 255.0, 16)
    assert len(np.unique(y16[y16 > 0])) > 1000


def test_dtype_and_nan_preserved():
    x = np.array([1.0, np.nan, -3.0], dtype=np.float16)
    y = log_quantize(x, 4.0, 8)
    assert y.dtype == np.float16 and np.isnan(y[1])
    assert log_quantize(np.array([3], dtype=np.int32), 4.0).dtype == np.float32


def test_bad_bits():
    with pytest.raises(ValueError, match="8 or 16"):
        log_quantize(np.ones(2), 1.0, 4)


def test_running_max():
    tops = RunningMax()
    assert tops.update("a", np.array([-10.0, 2.0])) == 10.0
    assert tops.update("a", np.array([100.0])) == 100.0
    assert tops.update("a", np.array([3.0, np.inf])) == 100.0
    assert tops["a"] == 100.0 and "b" not in tops


def test_one_outlier_flushes_most_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=100_000)
    x[0] = 1000.0
    frac = flushed_fraction(x, bits=8)
    y = log_quantize(x, np.abs(x).max(), 8)
    assert 0.9 < frac < 0.99
    assert np.mean(y[x != 0] == 0) == pytest.approx(frac, abs=1e-9)
    assert flushed_fraction(x, bits=16) < frac


def test_q12_rounding():
    y = to_q12(np.array([1.0 / 3, -2.00001, 1e9, 0.5 / 4096 + 1e-12]))
    assert y[0] == pytest.approx(1365 / 4096)
    assert y[1] == pytest.approx(-2.0)
    assert y[2] == pytest.approx((2**31 - 1) / 4096)
    assert y[3] == pytest.approx(1 / 4096)
