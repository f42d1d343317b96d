"""Build hook for netdiff's optional C kernel (netdiff/_fastmetrics.c); metadata lives in pyproject.toml.

The kernel only speeds up netdiff.metrics: when it cannot be compiled (no C compiler, unusual
platform) the install still succeeds and netdiff uses its numpy implementation.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _buildflags():
    """netdiff/_buildflags.py, loaded by path (netdiff is not importable before it is installed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netdiff", "_buildflags.py")
    spec = importlib.util.spec_from_file_location("_netdiff_buildflags", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the optional extension cannot be built."""

    def build_extension(self, ext):
        flags = _buildflags()
        # Built where it runs (pip install -e . / from source): this CPU's best x86-64 level unless
        # NETDIFF_BUILD_LEVEL (portable, x86-64-v2/-v3/-v4) or NETDIFF_PORTABLE_BUILD says otherwise
        # (the module refuses to load on a CPU lacking the level; its results do not depend on it).
        unix = self.compiler.compiler_type == "unix"
        level = flags.requested_level()
        ext.define_macros = [*ext.define_macros, flags.digest_define(ext.sources[0])]
        attempts = [flags.compile_flags(level), flags.compile_flags("portable")] if unix else [[]]
        for extra in attempts:
            ext.extra_compile_args = extra
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
