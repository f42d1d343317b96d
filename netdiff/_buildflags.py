"""Compiler flags of the optional C kernel (netdiff/_fastmetrics.c), shared by setup.py and the tests.

Standard library only: setup.py loads this file by path before netdiff is installed.

Levels: ``portable`` (no -march: the compiler's default x86-64 baseline, or any other platform),
``x86-64-v2``, ``x86-64-v3`` (AVX2, FMA) and ``x86-64-v4`` (AVX-512). By default the kernel is built
for the best level the building CPU has; ``NETDIFF_BUILD_LEVEL`` picks one (a level, or ``auto``),
``NETDIFF_PORTABLE_BUILD=1`` means ``portable``. The results do not depend on the level (the kernel
fixes its summation order and -ffp-contract=off forbids fused multiply-adds; tests/speed checks it).
"""

from __future__ import annotations

import os
import platform

LEVELS = ("portable", "x86-64-v2", "x86-64-v3", "x86-64-v4")
#: /proc/cpuinfo flags each x86-64 level needs (beyond the previous level's).
_NEEDS = {
    "x86-64-v2": {"sse4_1", "sse4_2", "ssse3", "popcnt", "cx16"},
    "x86-64-v3": {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}
#: Flags of every unix build: fixed rounding (no FMA contraction, no fast-math), vectorisable loops.
BASE_FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-ffp-contract=off", "-std=c99"]


def cpu_levels() -> list[str]:
    """The levels this machine can run, lowest first (always starts with ``portable``)."""
    levels = ["portable"]
    if platform.machine() not in ("x86_64", "AMD64"):
        return levels
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = set(next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), []))
    except OSError:
        return levels
    have = set()
    for level in LEVELS[1:]:
        have |= _NEEDS[level]
        if not have <= flags:
            break
        levels.append(level)
    return levels


def requested_level(environ: dict[str, str] | None = None) -> str:
    """The level to build: NETDIFF_BUILD_LEVEL, else portable with NETDIFF_PORTABLE_BUILD, else the best.

    Raises:
        ValueError: NETDIFF_BUILD_LEVEL names no known level.
    """
    env = os.environ if environ is None else environ
    level = env.get("NETDIFF_BUILD_LEVEL", "").strip() or "auto"
    if level == "auto":
        if env.get("NETDIFF_PORTABLE_BUILD"):
            return "portable"
        return cpu_levels()[-1]
    if level not in LEVELS:
        raise ValueError(f"NETDIFF_BUILD_LEVEL={level!r}: expected one of auto, {', '.join(LEVELS)}")
    return level


def compile_flags(level: str) -> list[str]:
    """gcc/clang flags of a unix build at ``level``."""
    if level not in LEVELS:
        raise ValueError(f"unknown build level {level!r}")
    march = [] if level == "portable" else [f"-march={level}"]
    return [*BASE_FLAGS, *march]


SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fastmetrics.c")


def source_digest(path: str = SOURCE) -> str | None:
    """First 16 hex digits of the SHA-256 of the kernel's source, or None when the file is absent.

    Compiled into the module (``SOURCE_DIGEST``) so netdiff can tell a kernel built from an older
    source (an editable checkout updated without ``pip install -e .``) and not use it.
    """
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()[:16]
    except OSError:
        return None


def digest_define(path: str = SOURCE) -> tuple[str, str]:
    """The (name, value) C macro carrying :func:`source_digest` of ``path``."""
    return "ND_SOURCE_DIGEST", f'"{source_digest(path) or ""}"'


def build_kernel(level: str, out_dir: str, source: str | None = None) -> str:
    """Compile the kernel at ``level`` into ``out_dir`` as setup.py would (unix compilers); returns the .so path.

    Used by tests/speed and benchmarks to check and time every level on one machine.
    """
    import subprocess
    import sysconfig

    source = source or SOURCE
    out = os.path.join(out_dir, "_fastmetrics" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    name, value = digest_define(source)
    cmd = [*cc, "-shared", "-fPIC", *compile_flags(level), f"-D{name}={value}", f"-I{sysconfig.get_paths()['include']}",
           source, "-o", out]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def load_kernel(path: str):
    """Import a kernel built by :func:`build_kernel` (a separate module object, not netdiff._fastmetrics)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("netdiff._fastmetrics", path)
    spec = importlib.util.spec_from_file_location("netdiff._fastmetrics", path, loader=loader)
    return importlib.util.module_from_spec(spec)
