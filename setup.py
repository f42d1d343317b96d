"""Build hook for netdiff's optional C kernel (netdiff/_fastmetrics.c); metadata lives in pyproject.toml.

The kernel only speeds up netdiff.metrics: when it cannot be compiled (no C compiler, unusual
platform) the install still succeeds and netdiff uses its numpy implementation.
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _cpu_level_flags() -> list[str]:
    """-march=x86-64-v4 / -v3 when this Linux x86-64 CPU has AVX-512 / AVX2 (measured faster than -march=native)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma", "bmi2", "f16c"} <= set(flags):
        return ["-march=x86-64-v4"]
    if {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"} <= set(flags):
        return ["-march=x86-64-v3"]
    return []


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the optional extension cannot be built."""

    def build_extension(self, ext):
        base = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-std=c99"] if self.compiler.compiler_type == "unix" else []
        # Built where it runs (pip install -e . / from source): target this CPU's x86-64 level unless
        # NETDIFF_PORTABLE_BUILD is set (the module refuses to load on a CPU lacking the level).
        native = _cpu_level_flags() if base and not os.environ.get("NETDIFF_PORTABLE_BUILD") else []
        for flags in ([*base, *native], base, []):
            ext.extra_compile_args = flags
            try:
                super().build_extension(ext)
                return
            except Exception as e:  # compiler missing or rejecting a flag: retry plainer, then give up
                error = e
        print(f"netdiff: optional C kernel {ext.name} not built ({error}); using the numpy implementation",
              file=sys.stderr)

    def run(self):
        try:
            super().run()
        except Exception as e:
            print(f"netdiff: optional C kernels not built ({e}); using the numpy implementation", file=sys.stderr)


setup(
    ext_modules=[Extension("netdiff._fastmetrics", ["netdiff/_fastmetrics.c"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
