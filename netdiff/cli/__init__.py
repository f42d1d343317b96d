"""The ``netdiff`` command line. Each import line below registers one command."""

from __future__ import annotations

import sys

from typer.core import TyperCommand

from netdiff.cli._help import GroupedCommand
from netdiff.cli.app import DEBUG, app

from netdiff.cli import compare  # noqa: E402,F401  (registration; this order is the --help order)
from netdiff.cli import run  # noqa: E402,F401
from netdiff.cli import dump  # noqa: E402,F401
from netdiff.cli import inspect  # noqa: E402,F401
from netdiff.cli import report  # noqa: E402,F401
from netdiff.cli import convert  # noqa: E402,F401
from netdiff.cli import simulate  # noqa: E402,F401
from netdiff.cli import sensitivity  # noqa: E402,F401
from netdiff.cli import lint  # noqa: E402,F401
from netdiff.cli import caffe_to_onnx  # noqa: E402,F401
from netdiff.cli import ascend_config  # noqa: E402,F401
from netdiff.cli import aipp_check  # noqa: E402,F401
from netdiff.cli import nnie_cfg_check  # noqa: E402,F401
from netdiff.cli import demo  # noqa: E402,F401

for _command in app.registered_commands:
    if _command.cls is None or _command.cls is TyperCommand:  # help grouped by purpose (rich_help_panel)
        _command.cls = GroupedCommand
    # --help lists each command's whole first docstring line
    if _command.short_help is None and _command.callback is not None and _command.callback.__doc__:
        _command.short_help = _command.callback.__doc__.strip().splitlines()[0]

def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: user and usage errors become one line on stderr and exit 2."""
    from netdiff.errors import NetdiffError

    io = sys.modules.get("netdiff._io")  # not imported for --help (it loads numpy); reset between in-process runs
    if io is not None:
        io.STDOUT_OUTPUT.clear()
    try:
        result = app(args=argv, prog_name="netdiff", standalone_mode=False)
    except NetdiffError as e:
        if DEBUG["enabled"]:
            raise
        # names from files may hold lone surrogates: printed escaped, never a UnicodeEncodeError
        print(f"netdiff: error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        print("netdiff: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # usage errors arrive here in non-standalone mode
        from netdiff.cli._help import usage_error_code

        code = usage_error_code(e, [c.name for c in app.registered_commands if c.name])
        if code is None:
            raise
        return code
    return result if isinstance(result, int) else 0


__all__ = ["app", "main"]
