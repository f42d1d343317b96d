"""Pre-flight checks: which layers a target toolchain cannot convert, or converts with different semantics.

``lint("deploy.prototxt", "nnie")`` or ``lint("model.onnx", "ascend", inputs="x.npy")`` returns a
:class:`LintResult`; rules live one module per target (``nnie.py``, ``ascend.py``). See docs/lint.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netdiff.lint.base import (
    LintLayer, LintModel, LintOptions, LintResult, LintRule, lint_rules, lint_targets, register_lint_rule,
    run_rules, target_for_format,
)


def lint(model: Any, target: str, *, weights: str | Path | None = None, inputs: Any = None, seed: int = 0
         ) -> LintResult:
    """Check ``model`` against the documented constraints of ``target``.

    Args:
        model: Caffe ``.prototxt`` or ``.onnx`` path, or an ONNX ModelProto.
        target: Lint target key ("nnie", "ascend"; see :func:`lint_targets`).
        weights: Caffe ``.caffemodel`` (Ascend constant checks; default: found beside the prototxt).
        inputs: Model inputs for rules that run the model (Ascend activation range); None skips them.
        seed: Unused unless a rule builds random inputs.

    Returns:
        The :class:`LintResult`; ``bool(result)`` is False when an error or warning fired.

    Raises:
        NetdiffError: Unknown target; ModelError for a missing or malformed model.
    """
    from netdiff.lint.model import load_lint_model

    lint_rules(target)  # validates the target before any loading
    prepared = load_lint_model(model, weights=weights, with_onnx=target == "ascend")
    options = LintOptions(inputs=inputs, weights=str(weights) if weights is not None else None, seed=seed)
    return run_rules(prepared, target, options)


__all__ = ["LintLayer", "LintModel", "LintOptions", "LintResult", "LintRule", "lint", "lint_rules", "lint_targets",
           "register_lint_rule", "run_rules", "target_for_format"]
