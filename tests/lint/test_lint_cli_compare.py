"""`netdiff lint` CLI (exit codes, JSON), docs coverage, and lint findings inside `netdiff compare`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lint_testkit import header, layer, write  # noqa: E402

import netdiff  # noqa: E402
from netdiff.cli import main  # noqa: E402
from netdiff.lint import lint_rules, target_for_format  # noqa: E402
from netdiff.types import Dump, Tensor  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lint.md"
TILE_NET = header(shape=(1, 1, 1, 128)) + layer("tile1", "Tile", body="tile_param { axis: 2 tiles: 94 }") \
    + layer("act", "Sigmoid", ("tile1",))


def test_cli_exit_codes_and_json(tmp_path, capsys):
    bad = write(tmp_path / "bad", TILE_NET)
    out = tmp_path / "lint.json"
    assert main(["lint", str(bad), "--target", "nnie", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "tile1" in text and "unsupported-layer" in text and "Concat of 94 copies" in text
    data = json.loads(out.read_text())
    assert data["target"] == "nnie" and data["model"] == str(bad) and data["format"] == "caffe"
    (finding,) = data["findings"]
    assert set(finding) == {"kind", "layer", "severity", "message", "evidence", "suggestion"}
    assert finding["kind"] == "unsupported_layer" and finding["evidence"]["rule"] == "unsupported-layer"

    clean = write(tmp_path / "clean", header(shape=(1, 1, 4, 4)) + layer("act", "Sigmoid"))
    assert main(["lint", str(clean), "--target", "nnie"]) == 0
    assert "OK: no rule fired" in capsys.readouterr().out
    assert main(["lint", str(clean), "--target", "rknn"]) == 2
    assert main(["lint", str(tmp_path / "missing.onnx"), "--target", "ascend"]) == 2
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x01garbage")
    assert main(["lint", str(tmp_path / "broken.onnx"), "--target", "ascend"]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_every_rule_is_documented_with_source_and_heuristic_flag():
    docs = DOCS.read_text()
    for rule in lint_rules():
        assert rule.source and rule.summary, rule.name
        assert f"`{rule.name}`" in docs, f"docs/lint.md lacks rule {rule.target}/{rule.name}"
    assert {r.target for r in lint_rules()} == {"nnie", "ascend"}


def test_target_for_format():
    assert [target_for_format(f) for f in ("nnie-sim", "nnie-mapper", "simulated-nnie8", "ascend", "onnx", "npz")] \
        == ["nnie", "nnie", "nnie", "ascend", None, None]


def _perturbed(reference: Dump, name: str, fmt: str) -> Dump:
    tensors = {}
    for t in reference:
        data = np.array(t.load(), copy=True)
        if t.name == name:
            data = np.roll(data, 1, axis=2) + 0.5
        tensors[t.name] = Tensor.from_array(t.name, data)
    return Dump(tensors, source="synthetic device dump", format=fmt)


def test_compare_explains_divergence_at_a_caffe_layer_lint_flags(tmp_path):
    proto = write(tmp_path, TILE_NET)
    x = {"data": np.random.default_rng(0).normal(size=(1, 1, 1, 128)).astype(np.float32)}
    reference = netdiff.runners.load_model(proto).run(x)
    report = netdiff.compare(proto, _perturbed(reference, "tile1", "nnie-sim"), inputs=x)
    assert report.first_divergence == "tile1"
    lint_findings = [f for f in report.findings if f.evidence.get("rule") == "unsupported-layer"]
    assert [f.layer for f in lint_findings] == ["tile1"]
    assert lint_findings[0].kind == "unsupported_layer" and "explains the diverged" in lint_findings[0].message
    # the same dump under a non-NNIE format gets no lint findings
    other = netdiff.compare(proto, _perturbed(reference, "tile1", "npz"), inputs=x)
    assert not [f for f in other.findings if "rule" in f.evidence]


def test_compare_maps_onnx_node_names_to_tensors(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool_floor", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    x = {"x": np.random.default_rng(1).normal(size=(1, 2, 7, 7)).astype(np.float32)}
    reference = netdiff.runners.load_model(tmp_path / "m.onnx").run(x)
    report = netdiff.compare(tmp_path / "m.onnx", _perturbed(reference, "p", "simulated-nnie8"), inputs=x)
    (finding,) = [f for f in report.findings if f.evidence.get("rule") == "pooling-rounding"]
    assert finding.layer == "p" and finding.kind == "semantic_mismatch"
    assert finding.evidence["lint_layer"] == "pool_floor" and finding.evidence["layer_status"] == "diverged"


def test_lint_finding_on_a_layer_that_inherited_its_divergence_explains_nothing(tmp_path):
    """The pooling-rounding lint flags pool_floor; the target's pool is right on its own (wrong) input: the
    finding stays, without "this explains", with the isolated cosine that shows why (issue 18)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], name="pool_floor", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]
    w = np.random.default_rng(2).normal(size=(2, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    x = {"x": np.random.default_rng(1).normal(size=(1, 2, 7, 7)).astype(np.float32)}
    reference = netdiff.runners.load_model(tmp_path / "m.onnx").run(x)
    tensors = {t.name: Tensor.from_array(t.name, np.array(t.load())) for t in reference}
    c = (np.roll(np.array(reference["c"].load()), 1, axis=3) * 1.5).astype(np.float32)  # the target's conv is wrong
    pooled = _maxpool2(c[:, :, :6, :6])  # ... and its pool right on that conv output (floor rounding, as the model)
    tensors.update(c=Tensor.from_array("c", c), p=Tensor.from_array("p", pooled),
                   y=Tensor.from_array("y", np.maximum(pooled, 0)))
    report = netdiff.compare(tmp_path / "m.onnx", Dump(tensors, source="device", format="simulated-nnie8"), inputs=x)
    assert report.first_divergence == "c" and report.layer("p").status == "diverged"
    (finding,) = [f for f in report.findings if f.evidence.get("rule") == "pooling-rounding"]
    assert "this explains" not in finding.message and "inherited" in finding.message
    assert finding.evidence["explains_divergence"] is False and finding.evidence["isolated_cosine"] > 0.9999
    assert "p" not in [f.layer for f in report.findings if f.kind == "introduced_error"]


def _maxpool2(a: np.ndarray) -> np.ndarray:
    n, ch, h, w = a.shape
    return a.reshape(n, ch, h // 2, 2, w // 2, 2).max(axis=(3, 5)).astype(np.float32)
