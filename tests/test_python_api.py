"""The Python API in a session or notebook: repr, _repr_html_, to_dataframe, to_json/to_dict, compare()."""

from __future__ import annotations

import inspect
import json
import math
import re
import warnings

import pytest

import netdiff
from netdiff.reports.json import report_from_json
from tests.conftest import save_target

CONV3 = "/features/conv3/Conv_output_0"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from netdiff.demo import build_demo

    case = build_demo(tmp_path_factory.mktemp("api-demo"))
    return netdiff.compare(case.model, case.target, {"input": case.input})


def test_repr_is_short_and_says_what_matters(demo):
    text = repr(demo)
    assert len(text) < 2000, len(text)
    assert text.startswith("<netdiff Report DIVERGED: small_cnn.onnx vs device_dump")
    assert f"first divergence {CONV3} (Conv)" in text
    assert demo.findings and demo.findings[0].kind in text
    assert "\n" not in text


def test_repr_stays_short_for_huge_names_and_many_findings(demo):
    from dataclasses import replace

    long = "/very" * 400 + "/tail_Conv_output_0"
    report = replace(demo, first_divergence=long, origins=[long] * 3,
                     findings=[replace(f, layer=long) for f in demo.findings] * 20)
    text = repr(report)
    assert len(text) < 2000 and "tail_Conv_output_0" in text and "more" in text


def test_repr_html_has_summary_findings_and_escaped_table(demo):
    from dataclasses import replace

    page = demo._repr_html_()
    assert "DIVERGED" in page and CONV3 in page
    assert demo.findings[0].kind in page and "fix:" in page
    assert page.count("<tr") == len(demo.layers) + 1  # header + one row per layer
    assert "<script" not in page
    hostile = replace(demo, layers=[replace(demo.layers[0], name=XSS, op_type=XSS)] + demo.layers[1:],
                      findings=[replace(demo.findings[0], message=XSS, layer=XSS, suggestion=XSS)],
                      first_divergence=XSS, reference={"path": f"/tmp/{XSS}.onnx"})
    page = hostile._repr_html_()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_to_dataframe_one_row_per_layer_with_metric_columns(demo):
    pytest.importorskip("pandas")
    frame = demo.to_dataframe()
    assert len(frame) == len(demo.layers)
    assert {"name", "op_type", "status", "cosine", "rel_l2", "sqnr_db", "max_abs", "origin", "isolated_cosine"} <= set(frame.columns)
    row = frame[frame["name"] == CONV3].iloc[0]
    layer = demo.layer(CONV3)
    assert row["status"] == "diverged" and bool(row["origin"])
    assert row["cosine"] == pytest.approx(layer.metrics.cosine)
    assert not math.isnan(row["isolated_cosine"])
    assert set(frame.loc[frame["status"] == "diverged", "name"]) == {x.name for x in demo.layers if x.status == "diverged"}


def test_to_dataframe_without_pandas_says_how_to_install(demo, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install pandas"):
        demo.to_dataframe()


def test_to_json_is_text_and_to_dict_the_data(demo):
    text = demo.to_json()
    assert isinstance(text, str)
    data = json.loads(text)
    assert data == demo.to_dict()
    assert data["first_divergence"] == CONV3 and data["version"] == 1
    assert report_from_json(text).first_divergence == CONV3
    # the old dict-style use keeps working, with a warning
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert text["first_divergence"] == CONV3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert text[:1] == "{"  # plain string indexing is unaffected


def test_compare_lists_its_options_like_the_pipeline():
    from netdiff.pipeline import compare

    public = inspect.signature(netdiff.compare).parameters
    pipeline = inspect.signature(compare).parameters
    assert list(public) == list(pipeline), "netdiff.compare must list the options of netdiff.pipeline.compare"
    for name, p in pipeline.items():
        assert public[name].kind == p.kind and public[name].default == p.default, name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in public.values())
    doc = netdiff.compare.__doc__
    assert all(re.search(rf"^\s+{name}:", doc, re.M) for name in public), "every option documented"


def test_compare_passes_the_options_through(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    bad = save_target(cnn_reference, tmp_path / "bad", perturb={CONV3: lambda v: v * 1.03})
    strict = netdiff.compare(cnn_path, bad, cnn_input_path, thresholds=netdiff_thresholds(0.99, 0.01),
                             diagnose=False, isolated="none")
    lenient = netdiff.compare(cnn_path, bad, cnn_input_path, thresholds=netdiff_thresholds(0.99, 0.05))
    assert strict.first_divergence == CONV3 and strict.findings == []
    assert lenient.first_divergence is None


def netdiff_thresholds(cosine, rel_l2):
    from netdiff.types import Thresholds

    return Thresholds(cosine, rel_l2)


def test_layer_repr_is_one_short_line(demo):
    text = repr(demo.layer(CONV3))
    assert text.startswith(f"<LayerResult {CONV3} (Conv) diverged cosine=0.9") and "origin" in text
    assert len(repr(demo.layers)) < 200 * len(demo.layers) and "\n" not in text


def test_dump_repr_is_short(cnn_reference):
    text = repr(cnn_reference)
    assert text.startswith("<Dump ") and f"{len(cnn_reference)} tensors" in text and len(text) < 600


def test_load_model_refuses_options_its_runner_does_not_take(cnn_path, tmp_path):
    from netdiff.errors import ModelError
    from netdiff.runners import load_model

    with pytest.raises(ModelError, match=r"option\(s\) bogus do not apply to runner 'onnx' \(it takes none\)"):
        load_model(cnn_path, bogus=1)
    assert load_model(cnn_path, bogus=None).path == cnn_path  # None means "not given"
    proto = tmp_path / "net.prototxt"
    proto.write_text('name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n')
    with pytest.raises(ModelError, match=r"do not apply to runner 'caffe' \(it takes: weights\)"):
        load_model(proto, side="x")
    assert load_model(proto, weights=tmp_path / "w.caffemodel").weights == tmp_path / "w.caffemodel"
