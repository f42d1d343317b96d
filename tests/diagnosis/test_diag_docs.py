"""Every finding kind a diagnosis rule can emit is documented (docs/findings.md and the README table)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def emitted_kinds() -> set[str]:
    kinds = set()
    for path in (ROOT / "netdiff").rglob("*.py"):
        kinds |= set(re.findall(r'Finding\(\s*"([a-z0-9_]+)"', path.read_text()))
    return kinds


def test_every_finding_kind_is_documented():
    kinds = emitted_kinds()
    assert {"input_channel_order", "resize_semantics", "quantization_coarse", "detection_scores_collapsed"} <= kinds
    findings_doc = (ROOT / "docs" / "findings.md").read_text()
    readme = (ROOT / "README.md").read_text()
    undocumented = sorted(k for k in kinds if f"### `{k}`" not in findings_doc)
    assert not undocumented, f"docs/findings.md lacks a section for {undocumented}"
    missing_in_readme = sorted(k for k in kinds if f"`{k}`" not in readme)
    assert not missing_in_readme, f"the README findings table lacks {missing_in_readme}"
