"""Shared fixtures: the bundled sample models, their reference dumps and target writers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from netdiff.runners.onnxrt import OnnxModel
from netdiff.types import Dump

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def shared_dir() -> Path | None:
    """The read-only ../shared folder with real third-party files, or None when absent."""
    candidates = [os.environ.get("NETDIFF_SHARED"), ROOT.parent / "shared"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def cnn_path() -> Path:
    return FIXTURES / "small_cnn.onnx"


@pytest.fixture(scope="session")
def cnn_input_path() -> Path:
    return FIXTURES / "small_cnn_input.npy"


@pytest.fixture(scope="session")
def cnn_reference(cnn_path: Path, cnn_input_path: Path) -> Dump:
    return OnnxModel(cnn_path).run({"input": np.load(cnn_input_path)})


def save_target(dump: Dump, out: Path, *, rename: Callable[[str], str] | None = None,
                nhwc: bool = False, perturb: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> Path:
    """Write a dump as a plain .npy directory the way a device tool might."""
    out.mkdir(parents=True, exist_ok=True)
    rename = rename or escape
    for t in dump:
        value = np.array(t.load())
        if perturb and t.name in perturb:
            value = perturb[t.name](value)
        if nhwc and value.ndim == 4:
            value = value.transpose(0, 2, 3, 1)
        np.save(out / f"{rename(t.name)}.npy", np.ascontiguousarray(value))
    return out


def escape(name: str) -> str:
    """Device-style escaping: '/' and '.' to '_'."""
    return name.replace("/", "_").replace(".", "_")


@pytest.fixture(autouse=True)
def every_diverged_report_has_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report any test builds with diagnosis on: diverged means at least one finding (issue 21)."""
    import netdiff.pipeline as pipeline

    finish = pipeline.finish_report

    def checked(report, *args, **kwargs):
        result = finish(report, *args, **kwargs)
        if kwargs.get("diagnose", True) and report.diverged:
            assert report.findings, f"a diverged report without any finding (first divergence {report.first_divergence})"
        return result

    monkeypatch.setattr(pipeline, "finish_report", checked)
