"""Isolated re-runs on device dumps, multi-sample comparison, and findings in the terminal and JSON."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import netdiff
from netdiff.cli import main
from netdiff.errors import InputError
from netdiff.multisample import compare_samples, load_samples
from netdiff.reports.terminal import render_text
from netdiff.runners.onnxrt import OnnxModel
from netdiff.samples import preprocess
from tests.conftest import escape, save_target
from tests.diagnosis.diag_faults import CONV1, CONV2, CONV3, as_target, image, model_and_input, run, scaled_weights


@pytest.fixture(scope="module")
def base():
    model, x = model_and_input()
    return model, x, run(model, x)


def test_isolated_separates_inherited_from_introduced(base):
    model, x, ref = base
    shifted = scaled_weights(model, "/features/conv2.bias", 1.0, add=0.3 * float(ref[CONV2].load().std()))
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(run(shifted, x)), x, isolated="all")
    conv2, relu2 = report.layer(CONV2), report.layer("/features/relu2/Relu_output_0")
    # conv2 is wrong by itself; relu2 diverges too but computes relu() of its (wrong) input exactly
    assert conv2.extra["isolated"]["cosine"] < 0.99 and conv2.introduced
    assert relu2.status == "diverged" and relu2.extra["isolated"]["cosine"] == pytest.approx(1.0)
    assert relu2.extra["isolated_inputs"] == {"target": [CONV2], "reference": []}


def test_isolated_falls_back_to_reference_inputs_and_records_them(base):
    model, x, ref = base
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(ref, drop=("input",)), x, isolated="all")
    conv1 = report.layer(CONV1)
    assert "isolated" not in conv1.extra  # its only input is missing: a re-run would only repeat the reference
    conv3 = report.layer(CONV3)
    assert conv3.extra["isolated_inputs"]["target"] == ["/features/pool/MaxPool_output_0"]
    assert conv3.extra["isolated"]["cosine"] == pytest.approx(1.0)


def test_isolated_modes(base):
    model, x, ref = base
    target = as_target(ref, perturb={CONV3: lambda v: v * -1 + 0.1})
    origins = netdiff.compare(OnnxModel.from_proto(model), target, x)
    assert [x.name for x in origins.layers if "isolated" in x.extra] == [CONV3]
    none = netdiff.compare(OnnxModel.from_proto(model), target, x, isolated="none")
    assert not any("isolated" in x.extra for x in none.layers)
    every = netdiff.compare(OnnxModel.from_proto(model), target, x, isolated="all")
    assert sum("isolated" in x.extra for x in every.layers) >= 10
    assert "isolated cos" in render_text(origins)
    with pytest.raises(netdiff.errors.NetdiffError, match="origins"):
        netdiff.compare(OnnxModel.from_proto(model), target, x, isolated="some")


def test_findings_shown_in_terminal_with_suggestion(base):
    model, x, _ = base
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(run(model, x[:, ::-1]), "nnie-sim"), x)
    text = render_text(report, width=140)
    assert "input_channel_order" in text and "R and B" in text
    assert "fix:" in text and "[RGB_order]" in text


def test_findings_in_json(tmp_path, base):
    model, x, ref = base
    model_path = tmp_path / "m.onnx"
    onnx.save(model, str(model_path))
    np.save(tmp_path / "x.npy", x)
    target = save_target(run(model, x * 255), tmp_path / "t", rename=escape)
    code = main(["compare", str(model_path), str(target), "--input", str(tmp_path / "x.npy"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    first = data["findings"][0]
    assert first["kind"] == "input_scale" and first["layer"] == "input" and first["evidence"]["factor"] == 255
    assert first["suggestion"]


def _samples_dir(tmp_path, seeds):
    d = tmp_path / "samples"
    d.mkdir()
    for s in seeds:
        np.save(d / f"img{s}.npy", preprocess(image(seed=s)))
    return d


def test_samples_directory_with_target_model(tmp_path, base):
    model, _, _ = base
    samples = _samples_dir(tmp_path, [0, 1, 2])
    report = compare_samples(OnnxModel.from_proto(model), OnnxModel.from_proto(model), samples)
    assert [s["id"] for s in report.meta["samples"]] == ["img0", "img1", "img2"]
    assert all(s["first_divergence"] is None for s in report.meta["samples"])
    stats = report.layer(CONV3).extra["samples"]
    assert stats["count"] == 3 and stats["worst_cosine"] == pytest.approx(1.0) and stats["diverged_in"] == []
    assert not [f for f in report.findings if f.kind == "dataset_dependent"]


def test_divergence_on_some_samples_is_dataset_dependent(tmp_path, base):
    model, _, _ = base
    samples = _samples_dir(tmp_path, [0, 1, 2])
    targets = tmp_path / "dumps"
    for s in (0, 1, 2):
        dump = run(model, preprocess(image(seed=s)))
        bad = {CONV3: lambda v: v + 0.5 * v.std() * np.sin(np.arange(v.size)).reshape(v.shape)} if s == 1 else None
        save_target(dump, targets / f"img{s}", perturb=bad)
    report = compare_samples(OnnxModel.from_proto(model), targets, samples)
    assert report.meta["worst_sample"] == "img1"
    assert {s["id"]: s["first_divergence"] for s in report.meta["samples"]} == {"img0": None, "img1": CONV3, "img2": None}
    assert (report.findings[0].kind, report.findings[0].layer) == ("dataset_dependent", CONV3)
    assert report.findings[0].evidence["diverging_samples"] == ["img1"]
    stats = report.layer(CONV3).extra["samples"]
    assert stats["worst_sample"] == "img1" and stats["diverged_in"] == ["img1"] and stats["mean_cosine"] > stats["worst_cosine"]


def test_cli_input_directory_compares_per_sample(tmp_path, base):
    model, _, _ = base
    model_path = tmp_path / "m.onnx"
    onnx.save(model, str(model_path))
    samples = _samples_dir(tmp_path, [0, 1])
    code = main(["compare", str(model_path), str(model_path), "--input", str(samples), "--json", str(tmp_path / "r.json")])
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert [s["id"] for s in data["meta"]["samples"]] == ["img0", "img1"]


def test_single_dump_target_with_several_samples_is_refused(tmp_path, base):
    model, x, ref = base
    samples = _samples_dir(tmp_path, [0, 1])
    target = save_target(ref, tmp_path / "one")
    with pytest.raises(InputError, match="one sample"):
        compare_samples(OnnxModel.from_proto(model), target, samples)


def test_load_samples_forms(tmp_path):
    d = tmp_path / "s"
    (d / "b").mkdir(parents=True)
    np.save(d / "b" / "input.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.savez(d / "a.npz", input=np.ones((1, 3, 4, 4), np.float32))
    assert [(s.id, type(s.inputs).__name__) for s in load_samples(d)] == [("a", "PosixPath"), ("b", "dict")]
    with pytest.raises(InputError):
        load_samples(tmp_path / "s" / "b" / "input.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sample"):
        load_samples(tmp_path / "empty")


@pytest.mark.parametrize("diverging, fires", [(1, True), (5, True), (6, False), (996, False), (10, False)])
def test_dataset_dependent_only_when_a_minority_diverges(diverging, fires):
    from netdiff.diagnosis.samples import dataset_dependent_finding
    from netdiff.types import Report, Thresholds

    total = 1000 if diverging == 996 else 10
    samples = [{"id": f"s{i}", "first_divergence": CONV3 if i < diverging else None} for i in range(total)]
    finding = dataset_dependent_finding(Report({}, {}, Thresholds(), [], meta={"samples": samples}))
    assert (finding is not None) == fires
    if fires:
        assert f"{diverging} of {total} samples only" in finding.message
