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


SEP = re.compile(r"[/_.]")


def _name_cells(text: str, header: str, table: int = 0) -> dict[int, str]:
    """Row number -> the name column's text in the ``table``-th table, continuation lines joined
    (marks and aliases dropped)."""
    lines = text.splitlines()
    top = [i for i, line in enumerate(lines) if line.lstrip().startswith("#  ")][table]
    start = lines[top].index(header)
    cells: dict[int, list[str]] = {}
    row = None
    for line in lines[top + 1:]:
        number = re.match(r"\s*(\d+) ", line)
        cell = line[start:].strip()
        if number:
            row = int(number.group(1))
            cells[row] = [cell.removeprefix("▶ ").removeprefix("◆ ").split("  ")[0]]
        elif row is not None and cell and not line[:start].strip():
            cells[row].append(cell.split("  ")[0])
        else:
            break
    return {r: "".join(parts) for r, parts in cells.items()}


def _elision(shown: str, name: str) -> re.Match:
    pattern = "(.+)".join(re.escape(p) for p in shown.split("…"))
    match = re.fullmatch(pattern, name, re.DOTALL)
    assert match, f"{shown!r} is not {name!r} with parts left out"
    return match


def _check_names(text: str, header: str, names: dict[int, str], table: int = 0) -> None:
    """Every shown name is its full name with whole units left out: tokens (split on / _ .) whole,
    path segments of <= 12 characters whole or left out whole, and no shown name also reads as another."""
    prefix = re.search(r"without their common prefix (\S+)\)", text)
    strip = (lambda n: n[len(prefix.group(1)):] if n.startswith(prefix.group(1)) else n) if prefix else (lambda n: n)
    shown = _name_cells(text, header, table)
    assert set(shown) == set(names), (sorted(set(names) - set(shown)), text)
    full = {r: strip(n) for r, n in names.items()}
    for r, s in shown.items():
        name = full[r]
        match = _elision(s, name)
        tokens = set(SEP.split(name))
        for piece in SEP.split(s):
            assert piece in tokens or piece == "…", f"{s!r} cuts a token of {name!r} ({piece!r}):\n{text}"
        for g in range(1, (match.lastindex or 0) + 1):
            a, b = match.span(g)
            assert (a == 0 or name[a - 1] in "/_." or name[a] in "/_.") and (b == len(name) or name[b] in "/_."
                                                                            or name[b - 1] in "/_."), (s, name)
            pos = 0
            for segment in name.split("/"):
                lo, hi = pos, pos + len(segment)
                pos = hi + 1
                if len(segment) <= 12 and lo < b and a < hi:
                    assert a <= lo and hi <= b, f"{s!r} breaks the segment {segment!r} of {name!r}:\n{text}"
        others = [n for q, n in full.items() if n != name]
        if "…" in s:
            clash = [n for n in others if re.fullmatch("(.+)".join(re.escape(p) for p in s.split("…")), n, re.DOTALL)]
            assert not clash, f"{s!r} reads as {name!r} and as {clash}:\n{text}"
    distinct = {}
    for r, s in shown.items():
        assert distinct.setdefault(s, full[r]) == full[r], f"{s!r} stands for two names:\n{text}"


def _check_table(text: str, names: list[str], statuses: set[str], width: int) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#  "))
    tokens = "\n".join(lines[header:]).split()
    for status in statuses:  # every status present in full, none cut
        assert status in tokens, (status, text)
    for status in STATUSES:
        assert not any(t != status and t.endswith("…") and status.startswith(t[:-1]) for t in tokens), text


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
    _check_names(table, "layer", {x.order if x.order is not None else i: x.name for i, x in enumerate(report.layers)})
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

    names = OnnxModel(model).run({"input": np.load(x)}).names
    _check_table(text, names, set(), width)
    _check_names(text, "tensor", dict(enumerate(names)))
    assert len(rows) == 18 and all("float32" in row.split() for row in rows)


@pytest.mark.parametrize("width", WIDTHS)
def test_sensitivity_table_fits(deep, width):
    from netdiff.cli.sensitivity import SensitivityView
    from netdiff.sensitivity import analyze_sensitivity

    model, x, _ = deep
    result = analyze_sensitivity(model, str(x), kind="int8", max_exclude=2)
    text = _render(SensitivityView(result, top=10), width)
    _check_table(text.split("╭")[0], [s.node for s in result.layers], set(), width)
    tables = text.split("╭")[0]
    _check_names(tables, "node", {i: s.node for i, s in enumerate(result.layers[:10], 1)})
    _check_names(tables, "node", {i: s.node for i, s in enumerate(result.by_recovery()[:10], 1)}, table=1)
    assert "alone cos" in text and "nodes_to_exclude" in text


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    """small_cnn quantized by onnxruntime (QDQ, per tensor) and dumped by netdiff: names such as
    /features/relu1/Relu_output_0_QuantizeLinear_Output that differ only in a short segment or a token."""
    from pathlib import Path

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from netdiff.cli import main

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    samples = [np.load(p) for p in sorted((fixtures / "sim_calib").glob("*.npy"))]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    root = tmp_path_factory.mktemp("qdq")
    model = root / "small_cnn.qdq.onnx"
    quantize_static(str(fixtures / "small_cnn.onnx"), str(model), Reader(), quant_format=QuantFormat.QDQ)
    x = fixtures / "small_cnn_input.npy"
    assert main(["dump", str(model), "-i", str(x), "--out", str(root / "dump")]) == 0
    return fixtures / "small_cnn.onnx", x, root / "dump"


@pytest.mark.parametrize("width", WIDTHS)
def test_qdq_dump_names_stay_distinct(qdq, width, monkeypatch, capsys):
    """The audit's case: Q and DQ tensors of relu1 and relu2 must not all read Relu_outp…antizeLinear_Output."""
    import json

    import netdiff
    from netdiff.cli import main
    from netdiff.reports.terminal import ReportView

    model, x, dump = qdq
    names = [t["name"] for t in json.loads((dump / "manifest.json").read_text())["tensors"]]
    assert any(n.endswith("relu1/Relu_output_0_QuantizeLinear_Output") for n in names)
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["inspect", str(dump)]) == 0
    text = capsys.readouterr().out
    _check_table(text, names, set(), width)
    _check_names(text, "tensor", dict(enumerate(names)))

    report = netdiff.compare(model, dump, x)
    table = _render(ReportView(report, show_all=True), width).split("╭")[0]
    _check_table(table, [x.name for x in report.layers], {x.status for x in report.layers}, width)
    _check_names(table, "layer", {x.order if x.order is not None else i: x.name for i, x in enumerate(report.layers)})


def test_shorten_column_never_ambiguous():
    """Column-wide shortening on names that differ in one short segment or one token."""
    from netdiff.reports.names import shorten_column

    names = [f"/features/relu{k}/Relu_output_0{q}" for k in (1, 2) for q in ("", "_QuantizeLinear_Output",
                                                                           "_DequantizeLinear_Output")]
    names += [f"/features/conv{k}.weight_DequantizeLinear_Output" for k in (1, 2)]
    for width in (16, 20, 24, 30):
        lines = shorten_column(names, [width] * len(names))
        shown = ["".join(x.strip() for x in ls) for ls in lines]
        assert len(set(shown)) == len(names), shown
        assert all(len(line) <= width for ls in lines for line in ls)
        for s, name in zip(shown, names):
            _elision(s, name)


def test_gain_from_exact_inputs_reads_as_infinity(tmp_path):
    """An error introduced from inputs equal to the reference's has an unbounded gain: the table
    shows ∞ and a finding says the inputs are exact, never 'gain inf'."""
    from pathlib import Path

    import netdiff
    from netdiff.diagnosis.propagation import gain_phrase
    from netdiff.manifest import write_dump
    from netdiff.reports.terminal import ReportView
    from netdiff.runners.onnxrt import OnnxModel
    from netdiff.types import Tensor

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    x = np.load(fixtures / "small_cnn_input.npy")
    reference = OnnxModel(fixtures / "small_cnn.onnx").run({"input": x})
    last = reference.names[-1]
    tensors = [Tensor.from_array(t.name, np.array(t.load()) + (0.3 if t.name == last else 0)) for t in reference]
    report = netdiff.compare(fixtures / "small_cnn.onnx", write_dump(tensors, tmp_path / "t"), {"input": x})
    layer = next(x for x in report.layers if x.name == last)
    assert layer.error_gain == float("inf")
    text = _render(ReportView(report, show_all=True), 160)
    row = next(line for line in text.splitlines() if last in line and "diverged" in line)
    assert " ∞ " in row + " " and " inf" not in row, row
    assert "gain inf" not in text
    assert gain_phrase(float("inf")) == ", error gain ∞: its inputs are exact" and gain_phrase(2.25) == ", error gain 2.2"
