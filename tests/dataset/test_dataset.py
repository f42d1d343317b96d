"""Dataset-scale comparison on a real classifier (MTCNN RNet) vs its onnxruntime QDQ int8 model.

The int8 model is made here with quantize_static; every aggregate is checked against an
independent computation from plain onnxruntime runs of both models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from netdiff.cli import main
from netdiff.dataset import compare_dataset
from netdiff.errors import InputError
from netdiff.reports.json import report_to_json
from netdiff.samples import image_like_input, quantize_qdq, write_samples

ROOT = Path(__file__).resolve().parents[2]
RNET = ROOT / "fixtures" / "mtcnn" / "rnet.onnx"
SHAPE = (1, 24, 24, 3)
COUNT = 30


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    calib = [{"input_2": image_like_input(SHAPE, 10_000 + i)} for i in range(8)]
    qdq = quantize_qdq(RNET, root / "rnet.int8.onnx", calib)
    samples = root / "samples"
    # photo-like samples, and noise samples (outside the calibrated range: some classes flip)
    write_samples(samples, SHAPE, COUNT // 2, seed=0)
    rng = np.random.default_rng(5)
    for i in range(COUNT - COUNT // 2):
        np.save(samples / f"z{i:03d}.npy", (2.0 * rng.standard_normal(SHAPE)).astype(np.float32))
    calib_dir = root / "calib"
    calib_dir.mkdir()
    for i, c in enumerate(calib):
        np.save(calib_dir / f"c{i}.npy", c["input_2"])
    return root, qdq, samples, calib_dir


def _truth(qdq, samples):
    """Independent: both models run alone (graphs as they are, as netdiff runs them), per sample softmax outputs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a, b = ort.InferenceSession(str(RNET), options), ort.InferenceSession(str(qdq), options)
    out = {}
    for f in sorted(samples.glob("*.npy")):
        x = np.load(f)
        out[f.stem] = (a.run(["softmax_1"], {"input_2": x})[0].ravel(), b.run(["softmax_1"], {"input_2": x})[0].ravel())
    return out


def _cos(r, t):
    r, t = r.astype(np.float64), t.astype(np.float64)
    return float(r @ t / (np.linalg.norm(r) * np.linalg.norm(t)))


def test_top1_agreement_and_flips_match_the_models_run_alone(data):
    root, qdq, samples, _ = data
    report = compare_dataset(RNET, qdq, samples, jobs=1, diagnose_worst=2)
    truth = _truth(qdq, samples)
    out = report.meta["dataset"]["outputs"]["softmax_1"]
    assert out["kind"] == "classification" and out["samples"] == COUNT
    flips = {k for k, (p, q) in truth.items() if np.argmax(p) != np.argmax(q)}
    assert flips, "the noise samples should flip some classes"
    assert {f["id"] for f in out["flips"]} == flips
    assert out["top1_agreement"] == pytest.approx(1 - len(flips) / COUNT)
    for f in out["flips"]:
        p, q = truth[f["id"]]
        assert (f["reference_class"], f["target_class"]) == (int(np.argmax(p)), int(np.argmax(q)))
        assert f["reference_margin"] == pytest.approx(float(np.max(p) - np.min(p)), abs=1e-6)  # 2 classes
    assert sum(c["samples"] for c in out["confusion"]) == len(flips)
    # the regression output is not a classification: judged by its cosine distribution
    assert report.meta["dataset"]["outputs"]["dense_2"]["kind"] == "other"
    # layer statistics of the output, against the independent per-sample cosines
    stats = report.layer("softmax_1").extra["samples"]
    cosines = {k: _cos(p, q) for k, (p, q) in truth.items()}
    assert stats["count"] == COUNT
    assert stats["mean_cosine"] == pytest.approx(np.mean(list(cosines.values())), abs=1e-6)
    assert stats["worst_cosine"] == pytest.approx(min(cosines.values()), abs=1e-6)
    assert stats["worst_sample"] == min(cosines, key=cosines.get)
    p5 = float(np.sort(list(cosines.values()))[math.ceil(0.05 * COUNT) - 1])
    assert stats["p5_cosine"] <= p5 + 1e-9 and 1 - stats["p5_cosine"] <= (1 - p5) * 1.07
    # the worst samples are diagnosed in full; the report is the worst one's
    worst = report.meta["dataset"]["worst"]
    assert len(worst) == 2 and worst[0]["id"] == report.meta["worst_sample"]
    records = {r["id"]: r for r in report.meta["samples"]}
    diverged = {k for k, r in records.items() if r["first_divergence"]}
    assert worst[0]["id"] in diverged and worst[0]["diverged_layers"] >= worst[1]["diverged_layers"]
    assert len(records) == COUNT and all("first_divergence" in r for r in records.values())


@pytest.fixture(scope="module")
def local_json(data):
    root, qdq, samples, _ = data
    return json.dumps(report_to_json(compare_dataset(RNET, qdq, samples, jobs=1)), sort_keys=True)


def test_jobs_2_identical_to_jobs_1(data, local_json):
    root, qdq, samples, _ = data
    two = report_to_json(compare_dataset(RNET, qdq, samples, jobs=2))
    assert json.dumps(two, sort_keys=True) == local_json


def test_default_jobs_keep_a_short_run_in_this_process(data, local_json, monkeypatch):
    """30 sub-millisecond samples: starting workers would cost more than the work; the same report."""
    from netdiff.dataset import engines

    root, qdq, samples, _ = data

    def no_workers(*args):
        raise AssertionError("workers started for a run shorter than WORKERS_PAY_AFTER_S")

    monkeypatch.setattr(engines, "_processes", no_workers)
    monkeypatch.setattr(engines, "default_jobs", lambda: 2)
    monkeypatch.setattr("netdiff.dataset.default_jobs", lambda: 2)
    default = report_to_json(compare_dataset(RNET, qdq, samples))
    assert json.dumps(default, sort_keys=True) == local_json


def test_default_jobs_start_workers_after_the_first_block_when_they_pay(data, local_json, monkeypatch):
    """The first block in this process, the rest in workers: the same report as --jobs 1."""
    from netdiff.dataset import engines

    root, qdq, samples, _ = data
    started = []
    processes = engines._processes
    monkeypatch.setattr(engines, "_processes", lambda job, indexed, jobs: started.append(len(indexed)) or
                        processes(job, indexed, jobs))
    monkeypatch.setattr(engines, "WORKERS_PAY_AFTER_S", 0.0)
    monkeypatch.setattr("netdiff.dataset.default_jobs", lambda: 2)
    default = report_to_json(compare_dataset(RNET, qdq, samples))
    assert json.dumps(default, sort_keys=True) == local_json
    (evaluator,) = engines._EVALUATORS.values()
    assert started == [COUNT - evaluator.block_size]


def test_one_sample_blocks_identical_to_the_default_blocks(data, local_json, monkeypatch):
    """A model too large for a block of samples runs one sample at a time: the same report."""
    from netdiff.dataset import engines, evaluate

    root, qdq, samples, _ = data
    monkeypatch.setattr(evaluate, "BLOCK_BYTES", 1)
    engines._EVALUATORS.clear()
    try:
        one = report_to_json(compare_dataset(RNET, qdq, samples, jobs=1))
        (evaluator,) = engines._EVALUATORS.values()
        assert evaluator.block_size == 1
    finally:
        engines._EVALUATORS.clear()
    assert json.dumps(one, sort_keys=True) == local_json


def test_labels_give_both_accuracies(data, tmp_path):
    root, qdq, samples, _ = data
    truth = _truth(qdq, samples)
    labels = {k: i % 2 for i, k in enumerate(sorted(truth))}
    path = tmp_path / "labels.csv"
    path.write_text("# id,class\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    report = compare_dataset(RNET, qdq, samples, jobs=1, labels=path)
    acc = report.meta["dataset"]["outputs"]["softmax_1"]["accuracy"]
    assert acc["labeled"] == COUNT
    assert acc["reference"] == pytest.approx(np.mean([np.argmax(truth[k][0]) == v for k, v in labels.items()]))
    assert acc["target"] == pytest.approx(np.mean([np.argmax(truth[k][1]) == v for k, v in labels.items()]))


def test_task_override_and_bad_task(data):
    root, qdq, samples, _ = data
    report = compare_dataset(RNET, qdq, samples, jobs=1, tasks={"softmax_1": "other"})
    assert report.meta["dataset"]["outputs"]["softmax_1"]["kind"] == "other"
    with pytest.raises(InputError, match="not a compared graph output"):
        compare_dataset(RNET, qdq, samples, jobs=1, tasks={"nope": "other"})


def test_cli_compare_and_run_take_a_samples_directory(data, tmp_path, capsys):
    root, qdq, samples, calib = data
    js = tmp_path / "c.json"
    html = tmp_path / "c.html"
    code = main(["compare", str(RNET), str(qdq), "--input", str(samples), "--jobs", "1", "--json", str(js),
                 "--html", str(html)])
    assert code == 1  # the worst sample diverges
    data_json = json.loads(js.read_text())
    assert data_json["meta"]["dataset"]["samples"] == COUNT
    page = html.read_text()
    assert "Output agreement per sample" in page and "Layers over all samples" in page
    assert f"href=\"#sample-{data_json['meta']['worst_sample']}\"" in page
    capsys.readouterr()
    assert main(["report", str(js)]) == 0  # a saved report re-renders its dataset section
    assert f"{COUNT} samples:" in capsys.readouterr().out
    # netdiff run: simulated int8, calibrated on --calib, evaluated on the samples
    js2 = tmp_path / "r.json"
    code = main(["run", str(RNET), "--target", "int8", "--input", str(samples), "--calib", str(calib),
                 "-j", "1", "--json", str(js2)])
    assert code in (0, 1)
    run = json.loads(js2.read_text())
    assert run["meta"]["dataset"]["samples"] == COUNT and run["meta"]["simulator"]["calibration"]["samples"] == 8
    assert run["meta"]["dataset"]["outputs"]["softmax_1"]["kind"] == "classification"
    # fp16 (#16 item 6: run takes a samples directory; fp16 calibrates nothing, so no --calib is needed)
    js3 = tmp_path / "f.json"
    assert main(["run", str(RNET), "--target", "fp16", "--input", str(samples), "-j", "1",
                 "--json", str(js3)]) == 0
    fp16_json = json.loads(js3.read_text())
    assert fp16_json["meta"]["simulator"]["calibration"]["samples"] == 0
    fp16 = fp16_json["meta"]["dataset"]
    assert fp16["outputs"]["softmax_1"]["top1_agreement"] == 1.0 and fp16["diverged_samples"] == 0


def test_run_without_calibration_is_refused(data, capsys):
    root, qdq, samples, _ = data
    assert main(["run", str(RNET), "--target", "int8", "--input", str(samples)]) == 2
    assert "--calib" in capsys.readouterr().err
    assert main(["run", str(RNET), "--target", "int8", "--input", str(samples), "--calib", str(samples)]) == 2
    assert "are the evaluation samples" in capsys.readouterr().err


def test_usage_errors(data, capsys):
    root, qdq, samples, _ = data
    assert main(["compare", str(RNET), str(qdq), "--input", str(samples), "--engine", "spark"]) == 2
    assert main(["compare", str(RNET), str(qdq), "--input", str(samples), "--task", "segmentation"]) == 2
    assert main(["compare", str(RNET), str(qdq), "--input", str(samples), "--jobs", "0"]) == 2


def test_image_samples_with_preprocessing_flags(tmp_path):
    from netdiff.samples import natural_image
    from tests.simulators.test_sim_calibration import write_png

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        write_png(images / f"img{i}.png", natural_image(30, 40, seed=i))
    js = tmp_path / "r.json"
    code = main(["compare", str(RNET), str(RNET), "--input", str(images), "-j", "1", "--mean", "127.5",
                 "--std", "128", "--json", str(js)])
    assert code == 0
    report = json.loads(js.read_text())
    assert [s["id"] for s in report["meta"]["samples"]] == ["img0", "img1", "img2", "img3"]
    assert report["meta"]["dataset"]["diverged_samples"] == 0


def test_dask_local_cluster_identical_to_local_run(data, local_json):
    distributed = pytest.importorskip("distributed")
    root, qdq, samples, _ = data
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        remote = report_to_json(compare_dataset(RNET, qdq, samples, engine="dask", address=cluster.scheduler_address))
    assert json.dumps(remote, sort_keys=True) == local_json


def test_detection_boxes_over_samples_sum_the_single_sample_comparisons(tmp_path):
    from netdiff.pipeline import compare

    model = ROOT / "fixtures" / "detection_head.onnx"
    qdq = quantize_qdq(model, tmp_path / "q.onnx", [{"images": image_like_input((1, 3, 64, 64), 100 + i)}
                                                   for i in range(4)])
    paths = write_samples(tmp_path / "s", (1, 3, 64, 64), 6)
    report = compare_dataset(model, qdq, tmp_path / "s", jobs=1, score_threshold=0.3)
    det = report.meta["dataset"]["detection"]["scores"]
    assert report.meta["dataset"]["outputs"]["boxes"]["kind"] == "detection"
    totals = {"reference_kept": 0, "target_kept": 0, "matched": 0}
    disagreeing = set()
    for path in paths:
        one = compare(model, qdq, {"images": np.load(path)}, score_threshold=0.3).meta["detection"][0]
        for key in totals:
            totals[key] += one[key]
        if one["lost"] or one["extra"]:
            disagreeing.add(path.stem)
    assert {k: det[k] for k in totals} == totals and det["samples"] == 6
    assert {d["id"] for d in det["disagreeing"]} == disagreeing
    assert det["lost"] == totals["reference_kept"] - totals["matched"]


def test_streamed_first_divergence_and_noise_match_the_full_comparison_of_each_sample(data):
    root, qdq, samples, _ = data
    files = sorted(samples.glob("s*.npy"))[:5] + sorted(samples.glob("z*.npy"))[:5]
    report = compare_dataset(RNET, qdq, files, jobs=1, diagnose_worst=len(files))
    full = {w["id"]: w for w in report.meta["dataset"]["worst"]}
    assert len(full) == len(files)
    for record in report.meta["samples"]:
        assert record["first_divergence"] == full[record["id"]]["first_divergence"], record["id"]
    # the QDQ model's precision is known: layers within the int8 noise are counted as noisy, not diverged
    noisy = sum(x.extra["samples"]["noisy"] for x in report.layers if "samples" in x.extra)
    assert noisy > 0
    assert all(x.extra["samples"]["diverged"] + x.extra["samples"]["noisy"] <= len(files)
               for x in report.layers if "samples" in x.extra)


def test_dask_engine_without_the_extra_says_how_to_install(data, monkeypatch, capsys):
    import sys

    root, qdq, samples, _ = data
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert main(["compare", str(RNET), str(qdq), "--input", str(samples), "--engine", "dask",
                 "--address", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'netdiff[dask]'" in err and "Traceback" not in err
