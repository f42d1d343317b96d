"""``netdiff ascend-config MODEL.json --out acl.json``: the ACL dump config for an om model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli.app import app


@app.command("ascend-config")
def ascend_config_command(
    om_json: Annotated[Path, typer.Argument(metavar="OM.json", help="om JSON from `atc --mode=1 --om=model.om --json=model.json`.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE.json", help="acl.json to write.")],
    dump_path: Annotated[str, typer.Option("--dump-path", metavar="PATH", help="Where the device writes dumps (dump_path).")] = "./dump",
    mode: Annotated[str, typer.Option("--mode", metavar="[output|input|all]", help="dump_mode: output, input or all.")] = "output",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write the acl.json that makes ACL dump every op of the model (pass it to aclInit)."""
    from netdiff.ascend.aclconfig import write_acl_config
    from netdiff.cli._common import console

    from netdiff._io import check_output_file

    check_output_file(out, "--out", force=force)
    config = write_acl_config(om_json, out, dump_path=dump_path, mode=mode, force=force)
    dump = config["dump"]
    console().print(f"wrote {out}: model {dump['dump_list'][0]['model_name']}, dump_mode {dump['dump_mode']}, "
                    f"dump_path {dump['dump_path']}")
