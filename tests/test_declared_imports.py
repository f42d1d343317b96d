"""Every import in netdiff/ comes from the standard library or a dependency pyproject.toml declares.

A module importable here only because something else installed it (a test extra, typer's old click,
a dependency's dependency) breaks on a fresh `pip install .`. Optional extras are allowed only when
the import is guarded (try/except ImportError with a clear message).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]

#: Import names whose distribution is named differently, for extras that may not be installed here.
ALIASES = {"PIL": "pillow", "cv2": "opencv-python-headless", "yaml": "pyyaml"}


def _norm(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_norm(r) for r in project["dependencies"]}
    extras = {_norm(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    return core, extras


def _guarded_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            lines |= {n.lineno for sub in node.body for n in ast.walk(sub) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def undeclared_imports(source: str, filename: str, core: set[str], extras: set[str]) -> list[str]:
    """Problems of one file: imports of undeclared packages, or of extras without an ImportError guard."""
    try:
        providers = {k: {_norm(d) for d in v} for k, v in metadata.packages_distributions().items()}
    except Exception:  # pragma: no cover - very old metadata
        providers = {}
    stdlib = set(sys.stdlib_module_names)
    tree = ast.parse(source)
    guarded = _guarded_lines(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in stdlib or top == "netdiff":
                continue
            if top == "pytest" and filename.endswith("pytest_plugin.py"):  # loaded by pytest itself
                continue
            dists = providers.get(top, set()) | {_norm(ALIASES.get(top, top))}
            if dists & core:
                continue
            if dists & extras and node.lineno in guarded:
                continue
            kind = "an extra, imported without an ImportError guard" if dists & extras else "not declared"
            problems.append(f"{filename}:{node.lineno}: import {module} ({', '.join(sorted(dists))}: {kind})")
    return problems


def test_every_import_of_the_package_is_declared():
    core, extras = declared()
    problems = []
    for file in sorted((ROOT / "netdiff").rglob("*.py")):
        problems += undeclared_imports(file.read_text(encoding="utf-8"), str(file.relative_to(ROOT)), core, extras)
    assert not problems, "\n".join(problems)


def test_the_check_catches_what_a_fresh_install_lacks():
    core, extras = declared()
    assert undeclared_imports("import click\n", "netdiff/cli/x.py", core, extras)  # typer >= 0.28 does not bring it
    assert undeclared_imports("def f():\n    import cv2\n", "netdiff/x.py", core, extras)  # extra, unguarded
    assert undeclared_imports("import pytest\n", "netdiff/testing.py", core, extras)
    guarded = "def f():\n    try:\n        from PIL import Image\n    except ImportError:\n        raise\n"
    assert not undeclared_imports(guarded, "netdiff/x.py", core, extras)
    assert not undeclared_imports("import numpy, json\nfrom typer.core import TyperCommand\n", "netdiff/x.py",
                                  core, extras)
