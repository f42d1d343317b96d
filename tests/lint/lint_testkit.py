"""Helpers for the lint tests: prototxt fragments and a Caffe runner for rewritten nets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "caffe"))

from caffe_testkit import write_model  # noqa: E402


def header(name: str = "data", shape=(1, 3, 8, 8)) -> str:
    return f'input: "{name}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'


def layer(name: str, type_: str, bottoms=("data",), tops=None, body: str = "") -> str:
    tops = (name,) if tops is None else tops
    text = f'layer {{\n  name: "{name}"\n  type: "{type_}"\n'
    text += "".join(f'  bottom: "{b}"\n' for b in bottoms) + "".join(f'  top: "{t}"\n' for t in tops)
    return text + (f"  {body}\n" if body else "") + "}\n"


def write(folder: Path, text: str, stem: str = "net", weights: dict | None = None) -> Path:
    """Write ``<stem>.prototxt`` and a caffemodel holding ``weights`` (layer name -> blobs)."""
    return write_model(folder, text, weights or {}, stem=stem)


def run_caffe(proto: Path, feeds: dict[str, np.ndarray]):
    """Run a prototxt (caffemodel beside it) with netdiff's public runner API; returns the Dump."""
    from netdiff.runners import load_model

    return load_model(proto).run({k: np.asarray(v, np.float32) for k, v in feeds.items()})


def rules(result) -> list[str]:
    return [f.evidence["rule"] for f in result.findings]


def by_rule(result, name: str):
    found = [f for f in result.findings if f.evidence["rule"] == name]
    assert found, f"rule {name} did not fire; fired: {rules(result)}"
    return found
