"""netdiff.testing.assert_close and the pytest plugin (with pytester)."""

from __future__ import annotations

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
    pytester.makepyfile(f"""
        def test_good(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{good}", r"{cnn_input_path}")

        def test_bad(netdiff_compare):
            netdiff_compare(r"{cnn_path}", r"{bad}", r"{cnn_input_path}")
    """)
    out_dir = tmp_path / "reports"
    result = pytester.runpytest(f"--netdiff-report={out_dir}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*first divergence /features/conv3/Conv_output_0*"])
    saved = list(out_dir.glob("*.json"))
    assert len(saved) == 1 and "test_bad" in saved[0].name
