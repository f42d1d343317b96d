"""Print a pip constraints file pinning every core dependency of pyproject.toml to its lowest allowed version."""

import re
import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
for requirement in pyproject["project"]["dependencies"]:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*([^;]*)", requirement)
    name, spec = match.group(1), match.group(2)
    floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", spec)
    if floor is None:
        sys.exit(f"floors: {requirement!r} has no >= lower bound; CI needs one to test the floor")
    print(f"{name}=={floor.group(1)}")
