"""A model run at another input size than its target dump: said, and no element-wise cause is invented."""

from __future__ import annotations

import logging

import numpy as np

import netdiff
from netdiff.dumping import dump_model


def test_resized_input_against_declared_size_dump_blames_the_input(tmp_path, cnn_path, cnn_input_path, caplog):
    dump = tmp_path / "at32"
    dump_model(cnn_path, dump, {"input": cnn_input_path})
    big = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="netdiff"):
        report = netdiff.compare(cnn_path, dump, {"input": big})
    warned = [r.getMessage() for r in caplog.records if "another input size" in r.getMessage()]
    assert warned and "[1, 3, 160, 160]" in warned[0] and "declared [1, 3, 32, 32]" in warned[0]
    assert "[1, 3, 160, 160]" in report.meta["reference.input_resized"]
    kinds = [f.kind for f in report.findings]
    assert kinds[0] == "input_shape_mismatch" and report.findings[0].layer == "input"
    assert report.findings[0].evidence == {"reference_shape": [1, 3, 160, 160], "target_shape": [1, 3, 32, 32]}
    # GlobalAveragePool makes the shapes equal again: its difference comes from the other input, not a fault there
    assert "channel_mismatch" not in kinds and report.origins == []
    assert all(f.severity != "error" for f in report.findings[1:]), kinds


def test_declared_size_is_silent(tmp_path, cnn_path, cnn_input_path, caplog):
    with caplog.at_level(logging.WARNING, logger="netdiff"):
        report = netdiff.compare(cnn_path, cnn_path, {"input": cnn_input_path})
    assert not [r for r in caplog.records if "another input size" in r.getMessage()]
    assert "reference.input_resized" not in report.meta and report.findings == []
