"""Terminal tables fit 80 and 120 columns: statuses whole, names never broken inside a short path segment.

A real ONNX model with deep exporter-style names (/backbone/stageN/blockM/convK/Conv_output_0) is
compared with a perturbed dump of itself (one tensor missing, one target-only, one diverged), inspected,
and ranked by int8 sensitivity; each view is rendered by a rich Console of fixed width.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

from netdiff.types import STATUSES

WIDTHS = (80, 120)


def _model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev, channels = [], [], "input", 3
    for stage in range(1, 3):
        for block in range(1, 3):
            for conv in range(1, 3):
                base = f"/backbone/stage{stage}/block{block}/conv{conv}"
                w = rng.normal(0, 0.3, (8, channels, 3, 3)).astype(np.float32)
                inits.append(numpy_helper.from_array(w, f"{base}.weight"))
                nodes.append(helper.make_node("Conv", [prev, f"{base}.weight"], [f"{base}/Conv_output_0"],
                                              name=f"{base}/Conv", pads=[1, 1, 1, 1]))
                nodes.append(helper.make_node("Relu", [f"{base}/Conv_output_0"], [f"{base}/act/Relu_output_0"],
                                              name=f"{base}/act/Relu"))
                prev, channels = f"{base}/act/Relu_output_0", 8
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["/head/global_pool/GlobalAveragePool_output_0"],
                                  name="/head/global_pool/GlobalAveragePool"))
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("/head/global_pool/GlobalAveragePool_output_0",
                                                             TensorProto.FLOAT, [1, 8, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    from netdiff.manifest import write_dump
    from netdiff.runners.onnxrt import OnnxModel
    from netdiff.types import Tensor

    root = tmp_path_factory.mktemp("deep")
    model = _model(root / "deep.onnx")
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    np.save(root / "x.npy", x)
    reference = OnnxModel(model).run({"input": x})
    tensors = []
    for t in reference:
        if t.name == "/backbone/stage1/block2/conv1/Conv_output_0":
            continue  # missing_in_target
        value = np.array(t.load())
        if "stage2" in t.name:
            value = value + np.random.default_rng(2).normal(0, 0.5, value.shape).astype(np.float32)
        tensors.append(Tensor.from_array(t.name, value))
    tensors.append(Tensor.from_array("/device/internal/scratch_buffer_0", np.zeros(4, np.float32)))
    target = write_dump(tensors, root / "target")
    return model, root / "x.npy", target


def _render(renderable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False, markup=False)
    console.print(renderable)
    return console.file.getvalue()


def _check_table(text: str, names: list[str], statuses: set[str], width: int) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#  "))
    tokens = "\n".join(lines[header:]).split()
    for status in statuses:  # every status present in full, none cut
        assert status in tokens, (status, text)
    for status in STATUSES:
        assert not any(t != status and t.endswith("…") and status.startswith(t[:-1]) for t in tokens), text
    segments = {seg for n in names for seg in n.split("/") if seg}
    long_segments = [s for s in segments if len(s) > 12]
    for token in (t.strip("▶◆←") for t in tokens if "/" in t):
        for piece in token.split("/"):
            if not piece or piece == "…" or piece in segments:
                continue
            if "…" in piece:  # cut inside a segment: only allowed for one longer than 12
                head, _, tail = piece.partition("…")
                assert any(s.startswith(head) and s.endswith(tail) for s in long_segments), (piece, text)
            else:
                raise AssertionError(f"name broken inside the segment {piece!r}:\n{text}")


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_fits(deep, width):
    import netdiff
    from netdiff.reports.terminal import ReportView

    model, x, target = deep
    report = netdiff.compare(model, target, x, diagnose=True)
    text = _render(ReportView(report, show_all=True), width)
    statuses = {layer.status for layer in report.layers}
    assert {"ok", "diverged", "missing_in_target", "missing_in_reference"} <= statuses
    table = text.split("╭")[0]
    _check_table(table, [x.name for x in report.layers], statuses, width)
    assert "excluded=," not in text and "None" not in text
    assert len([line for line in table.splitlines() if re.match(r"\s*\d+ ", line)]) == len(report.layers)


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_table_fits(deep, width, monkeypatch, capsys):
    from netdiff.cli import main

    model, x, _ = deep
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["inspect", str(model), "-i", str(x)]) == 0
    text = capsys.readouterr().out
    from netdiff.runners.onnxrt import OnnxModel

    rows = [line for line in text.splitlines() if re.match(r"\s*\d+  ", line)]

    _check_table(text, OnnxModel(model).run({"input": np.load(x)}).names, set(), width)
    assert len(rows) == 18 and all("float32" in row.split() for row in rows)


@pytest.mark.parametrize("width", WIDTHS)
def test_sensitivity_table_fits(deep, width):
    from netdiff.cli.sensitivity import SensitivityView
    from netdiff.sensitivity import analyze_sensitivity

    model, x, _ = deep
    result = analyze_sensitivity(model, str(x), kind="int8", max_exclude=2)
    text = _render(SensitivityView(result, top=10), width)
    _check_table(text.split("╭")[0], [s.node for s in result.layers], set(), width)
    assert "alone cos" in text and "nodes_to_exclude" in text
