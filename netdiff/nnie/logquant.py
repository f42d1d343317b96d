"""NNIE's logarithmic 8/16-bit data format, as a pure numpy quantize-dequantize.

Model (fitted exactly to HiSilicon's GFPQ library, see docs/nnie.md), with L steps per octave and
n magnitude levels:

* ``D = 2 ** ((floor(L * log2(top)) + 1) / L)``: the grid point strictly above the calibrated top.
* ``x > 0``: ``k = clip(round(L * log2(x / D)), -n, -1)``, ``y = D * 2 ** (k / L)``;
  ``x < 0``: the same with ``k`` in ``[-(n - 1), -1]`` (one level fewer), sign restored.
* Rounding is to nearest in the log domain (halves round up, towards the larger magnitude).
* Zero flush: ``|x|`` below half of the smallest level of its side becomes 0.

8-bit (compile_mode 0): L=16, n=128. 16-bit (compile_mode 1 or ``_hp`` layers): L=128, n=1408.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdiff._lazy import lazy_import

np = lazy_import("numpy")


#: Top used when the calibration data holds only zeros (the mapper logs "set max value to 1e-6").
ZERO_TOP = 1e-6
#: Q20.12: layer outputs are int32 with 12 fractional bits.
Q12 = 4096.0
Q20_12_MAX = (2**31 - 1) / Q12
Q20_12_MIN = -(2**31) / Q12


@dataclass(frozen=True)
class LogFormat:
    """One NNIE data format: ``steps`` per octave, ``levels`` magnitude levels on the positive side."""

    bits: int
    steps: int
    levels: int


FORMATS = {8: LogFormat(8, 16, 128), 16: LogFormat(16, 128, 1408)}


def log_format(bits: int) -> LogFormat:
    """Return the format for 8 or 16 bits.

    Raises:
        ValueError: ``bits`` is neither 8 nor 16.
    """
    try:
        return FORMATS[int(bits)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"NNIE log quantization has 8 or 16 bits, not {bits!r}") from None


def grid_top(top: float, bits: int = 8) -> float:
    """Return ``D``, the grid point strictly above ``top`` (levels are ``D * 2**(k/L)``, k <= -1)."""
    fmt = log_format(bits)
    top = float(top)
    if not np.isfinite(top):
        raise ValueError(f"calibrated top must be finite, got {top}")
    if top <= 0.0:
        top = ZERO_TOP
    return float(2.0 ** ((np.floor(fmt.steps * np.log2(top)) + 1.0) / fmt.steps))


def levels(top: float, bits: int = 8, negative: bool = False) -> np.ndarray:
    """All representable magnitudes of one side, descending (the largest is ``D * 2**(-1/L)``)."""
    fmt = log_format(bits)
    d = grid_top(top, bits)
    count = fmt.levels - 1 if negative else fmt.levels
    return d * 2.0 ** (-np.arange(1, count + 1, dtype=np.float64) / fmt.steps)


def flush_threshold(top: float, bits: int = 8, negative: bool = False) -> float:
    """Magnitudes strictly below this become 0 (half of the side's smallest level)."""
    fmt = log_format(bits)
    d = grid_top(top, bits)
    exponent = -fmt.levels / fmt.steps - 1.0 + (1.0 / fmt.steps if negative else 0.0)
    return float(d * 2.0**exponent)


def log_quantize(x: np.ndarray, top: float, bits: int = 8) -> np.ndarray:
    """Quantize and dequantize ``x`` to NNIE's log format calibrated at ``top``.

    Args:
        x: Values (any shape; float16/32/64).
        top: Calibrated max |x| (running max over the calibration set); values above it
            saturate at the top level. Zero or negative means "only zeros seen" (1e-6).
        bits: 8 (compile_mode 0) or 16 (compile_mode 1, ``_hp`` layers).

    Returns:
        A new array of ``x``'s float dtype (float32 for non-float input).
    """
    fmt = log_format(bits)
    src = np.asarray(x)
    out_dtype = src.dtype if src.dtype.kind == "f" else np.dtype(np.float32)
    v = src.astype(np.float64)
    d = grid_top(top, bits)
    mag = np.abs(v)
    negative = v < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor(fmt.steps * np.log2(mag / d) + 0.5)
    low = np.where(negative, -(fmt.levels - 1), -fmt.levels)
    k = np.clip(np.nan_to_num(k, nan=-np.inf, neginf=-np.inf), low, -1)
    y = d * np.exp2(k / fmt.steps)
    flush = np.where(negative, flush_threshold(top, bits, True), flush_threshold(top, bits, False))
    y = np.where(mag < flush, 0.0, np.where(negative, -y, y))
    y = np.where(np.isnan(v), np.nan, y)
    return y.astype(out_dtype)


def flushed_fraction(x: np.ndarray, top: float | None = None, bits: int = 8) -> float:
    """Fraction of the non-zero values of ``x`` that quantization turns into 0.

    ``top`` defaults to max |x| (the tensor calibrated on itself).
    """
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    a = a[np.isfinite(a) & (a > 0)]
    if a.size == 0:
        return 0.0
    t = float(a.max()) if top is None else float(top)
    neg_thr = flush_threshold(t, bits, True)
    pos_thr = flush_threshold(t, bits, False)
    signed = np.asarray(x, dtype=np.float64).ravel()
    signed = signed[np.isfinite(signed) & (signed != 0)]
    below = np.where(signed < 0, np.abs(signed) < neg_thr, signed < pos_thr)
    return float(below.mean())


def to_q12(x: np.ndarray) -> np.ndarray:
    """Round to Q20.12 (1/4096 steps, int32 range) as a layer output is stored; returns float32."""
    v = np.asarray(x, dtype=np.float64)
    q = np.floor(v * Q12 + 0.5) / Q12
    q = np.clip(q, Q20_12_MIN, Q20_12_MAX)
    return np.where(np.isnan(v), np.nan, q).astype(np.float32)


class RunningMax:
    """Running max of |x| per tensor name: how NNIE calibrates (GFPQ UPDATE mode)."""

    def __init__(self) -> None:
        self.tops: dict[str, float] = {}

    def update(self, name: str, x: np.ndarray) -> float:
        """Fold ``x`` into ``name``'s top and return the new top (NaN/Inf ignored)."""
        a = np.abs(np.asarray(x, dtype=np.float64))
        a = a[np.isfinite(a)]
        value = float(a.max()) if a.size else 0.0
        top = max(self.tops.get(name, 0.0), value)
        self.tops[name] = top
        return top

    def __getitem__(self, name: str) -> float:
        return self.tops[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tops
