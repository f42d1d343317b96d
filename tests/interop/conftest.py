"""Independent writers of the foreign dump layouts the interop readers consume (docs/interop.md)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_run_results_by_hand(path: Path, runners: dict[str, list[dict[str, object]]], encode=None) -> Path:
    """Write RunResults JSON following the documented structure, without Polygraphy.

    ``encode(array) -> dict`` builds one output value; default is the 0.53 LazyArray form.
    """
    def default(array):
        return {"values": {"array": base64.b64encode(npy_bytes(array)).decode(), "polygraphy_class": "ndarray"},
                "polygraphy_class": "LazyArray"}

    encode = encode or default
    lst = [[name, [{"outputs": {k: (encode(v) if isinstance(v, np.ndarray) else v) for k, v in it.items()},
                    "runtime": 0.5, "runner_name": name, "polygraphy_class": "IterationResult"} for it in its]]
           for name, its in runners.items()]
    path.write_text(json.dumps({"lst": lst, "polygraphy_class": "RunResults"}, indent=4))
    return path


def msit_file(directory: Path, node: str, index: int, stamp: int, array: np.ndarray) -> Path:
    """Save one msit golden file: ``{node with . and / -> _}.{index}.{stamp}.npy``."""
    safe = node.replace(".", "_").replace("/", "_")
    path = directory / f"{safe}.{index}.{stamp}.npy"
    np.save(path, array, allow_pickle=False)
    return path


def rknn_snapshot(root: Path, layers: list[tuple[str, str, str]], sides: dict[str, dict[str, np.ndarray]],
                  with_map: bool = True, with_error: bool = True) -> Path:
    """Write an RKNN accuracy_analysis snapshot: ``layers`` = (op_type, layer_name, file_stem)."""
    root.mkdir(parents=True, exist_ok=True)
    for side, arrays in sides.items():
        (root / side / "npy").mkdir(parents=True, exist_ok=True)
        for _, name, stem in layers:
            if name in arrays:
                np.save(root / side / "npy" / f"{stem}.npy", arrays[name], allow_pickle=False)
                np.savetxt(root / side / f"{stem}.txt", np.asarray(arrays[name], dtype=np.float64).reshape(-1))
    if with_map:
        lines = ["layer_name" + " " * 40 + "file_name", "-" * 60]
        lines += [f"{name:<50}{stem}.npy" for _, name, stem in layers]
        (root / "map_name_to_file.txt").write_text("\n".join(lines) + "\n")
    if with_error:
        lines = ["# simulator_error: calculate the output error of each layer of the simulator.",
                 "layer_name" + " " * 40 + "simulator_error", " " * 50 + "entire   single",
                 " " * 50 + "cos | euc   cos | euc", "-" * 80]
        lines += [f"[{op}] {name:<45} 1.00000 | 0.0118    0.99990 | 0.0031" for op, name, _ in layers]
        (root / "error_analysis.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def writers():
    """The independent writers above, for tests (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(npy_bytes=npy_bytes, run_results=write_run_results_by_hand,
                                 msit_file=msit_file, rknn_snapshot=rknn_snapshot)
