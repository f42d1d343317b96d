"""The ``acl.json`` dump configuration the device needs to dump every op of an om model.

Keys (ACL ``aclmdlInitDump`` / ``aclInit`` config, CANN docs "dump configuration"):
``{"dump": {"dump_list": [{"model_name": M}], "dump_path": P, "dump_mode": "output"|"input"|"all",
"dump_op_switch": "off"}}``. ``model_name`` is the om JSON's ``name`` (the model name ATC
recorded), which is also the name of the model directory in the dump tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netdiff._io import write_text_atomic
from netdiff.ascend.fusion import FusionMap
from netdiff.errors import InputError, OutputError

DUMP_MODES = ("output", "input", "all")


def make_acl_config(om_json: str | Path, dump_path: str = "./dump", mode: str = "output") -> dict[str, Any]:
    """Build the ``acl.json`` content that dumps every op of the model described by ``om_json``.

    Raises:
        InputError: ``mode`` is not output/input/all or the om JSON has no model name.
        AlignmentError: ``om_json`` is not a readable om JSON.
    """
    if mode not in DUMP_MODES:
        raise InputError(f"dump mode {mode!r} is not one of {', '.join(DUMP_MODES)}")
    fmap = FusionMap.load(om_json)
    if not fmap.name:
        raise InputError(f"{om_json}: the om JSON has no model 'name'; it is needed for dump_list.model_name")
    return {"dump": {"dump_list": [{"model_name": fmap.name}], "dump_path": str(dump_path), "dump_mode": mode,
                     "dump_op_switch": "off"}}


def write_acl_config(om_json: str | Path, out: str | Path, dump_path: str = "./dump", mode: str = "output",
                     force: bool = False) -> dict[str, Any]:
    """Write :func:`make_acl_config`'s result to ``out`` atomically; refuse to overwrite without ``force``.

    Raises:
        OutputError: ``out`` exists and ``force`` is False, or cannot be written.
    """
    out = Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (use --force to overwrite)")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    config = make_acl_config(om_json, dump_path, mode)
    write_text_atomic(out, json.dumps(config, indent=2) + "\n")
    return config
