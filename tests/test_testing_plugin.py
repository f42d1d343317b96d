"""netdiff.testing.assert_close and the pytest plugin (with pytester)."""

from __future__ import annotations

import json
import re

import pytest

from netdiff.testing import NetdiffAssertionError, assert_close
from tests.conftest import save_target

pytest_plugins = ["pytester"]
CONV3 = "/features/conv3/Conv_output_0"


def test_assert_close_passes_and_fails_with_table(tmp_path, cnn_path, cnn_input_path, cnn_reference):
    good = save_target(cnn_reference, tmp_path / "good")
    report = assert_close(cnn_path, good, cnn_input_path)
    assert report.first_divergence is None
    bad = save_target(cnn_reference, tmp_path / "bad", perturb={CONV3: lambda v: -v})
    with pytest.raises(AssertionError) as info:
        assert_close(cnn_path, bad, cnn_input_path, min_cosine=0.99)
    message = str(info.value)
    first = message.splitlines()[0]
    assert CONV3 in first and "cosine" in first
    assert "layer" in message.splitlines()[1] and "status" in message.splitlines()[1]
    assert isinstance(info.value, NetdiffAssertionError)
    # restricting to healthy layers passes
    assert_close(cnn_path, bad, cnn_input_path, layers=["/features/conv1/Conv_output_0"])
    with pytest.raises(AssertionError, match="not in the report"):
        assert_close(cnn_path, bad, cnn_input_path, layers=["nope"])


def test_plugin_fixture_and_report_dir(pytester, tmp_path, cnn_path, cnn_input_path, cnn_reference):
    good = save_target(cnn_reference, tmp_path / "good")
    bad = save_target(cnn_reference, tmp_path / "bad", perturb={CONV3: lambda v: v * 0})
    pytester.makepyfile(test_models=f"""
        from netdiff.testing import assert_close

        def test_good(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{good}", r"{cnn_input_path}")

        def test_bad(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{bad}", r"{cnn_input_path}")

        def test_direct():
            assert_close(r"{cnn_path}", r"{bad}", r"{cnn_input_path}")
    """)
    out_dir = tmp_path / "reports"
    result = pytester.runpytest(f"--netdiff-report={out_dir}")
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    # the failure points at the test's own line, not into netdiff's helpers
    result.stdout.fnmatch_lines(["*def test_bad(netdiff_compare):", ">*netdiff_compare(*",
                                 "E*NetdiffAssertionError: netdiff: 1 layer(s) failed; first divergence "
                                 "/features/conv3/Conv_output_0*"])
    assert len(re.findall(r"^test_models\.py:\d+: NetdiffAssertionError$", text, re.M)) == 2, text
    assert "netdiff/testing.py" not in text and "netdiff/pytest_plugin.py" not in text
    # the message keeps its table and names the saved files
    result.stdout.fnmatch_lines(["E*layer*status*cosine*", "E*/features/conv3/Conv_output_0*diverged*"])
    saved = sorted(p.name for p in out_dir.iterdir())
    assert saved == ["test_models.py_test_bad.html", "test_models.py_test_bad.json",
                     "test_models.py_test_direct.html", "test_models.py_test_direct.json"]
    for name in saved:
        assert str(out_dir / name) in text
    data = json.loads((out_dir / "test_models.py_test_bad.json").read_text())
    assert data["first_divergence"] == CONV3
    assert "/features/conv3/Conv_output_0" in (out_dir / "test_models.py_test_bad.html").read_text()


def test_plugin_without_report_dir_writes_nothing(pytester, tmp_path, cnn_path, cnn_input_path, cnn_reference):
    bad = save_target(cnn_reference, tmp_path / "bad", perturb={CONV3: lambda v: v * 0})
    pytester.makepyfile(f"""
        def test_bad(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{bad}", r"{cnn_input_path}")
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "netdiff reports:" not in result.stdout.str()
    assert sorted(p.name for p in pytester.path.iterdir() if not p.name.startswith(".")) == ["test_plugin_without_report_dir_writes_nothing.py"]


def test_plugin_report_dir_that_cannot_be_written_keeps_the_failure(pytester, tmp_path, cnn_path, cnn_input_path,
                                                                    cnn_reference):
    bad = save_target(cnn_reference, tmp_path / "bad", perturb={CONV3: lambda v: v * 0})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    pytester.makepyfile(f"""
        def test_bad(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{bad}", r"{cnn_input_path}")
    """)
    result = pytester.runpytest(f"--netdiff-report={blocker}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"E*netdiff reports: not written to {blocker}*"])
    assert "INTERNALERROR" not in result.stdout.str()
