"""Help layout and usage errors, on public typer names only (typer 0.15-0.28: click or typer's own copy)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperCommand

#: Help sections, in the order every command lists them (options of other panels follow, then "Other").
PANELS = ("Inputs", "Alignment", "Thresholds", "Target", "Calibration and preprocessing", "Diagnosis", "Outputs",
          "Formats")
OTHER = "Other options"
_METAVARS = {"text": "TEXT", "str": "TEXT", "integer": "N", "int": "N", "float": "FLOAT", "path": "PATH",
             "boolean": "BOOL", "bool": "BOOL"}  # click 8.1 and typer 0.28 name the types differently


class GroupedCommand(TyperCommand):
    """A command whose help lists its options by purpose (the option's ``rich_help_panel``), also without rich."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # the same plain metavars whatever typer's version (0.28 prints "<str>")
            if (param.param_type_name == "option" and param.metavar is None and not getattr(param, "is_flag", False)
                    and not getattr(param, "count", False)):
                param.metavar = _METAVARS.get(getattr(param.type, "name", ""), None)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            elif param.param_type_name == "option":
                groups.setdefault(getattr(param, "rich_help_panel", None) or OTHER, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        order = [p for p in PANELS if p in groups] + [p for p in groups if p not in PANELS and p != OTHER]
        order += [OTHER] if OTHER in groups else []
        for panel in order:
            with formatter.section("Options" if order == [OTHER] else panel):
                formatter.write_dl(groups[panel])


def choice(*values: str) -> Callable[[Any], Any]:
    """An option callback accepting only ``values`` (a usage error, exit 2, otherwise)."""

    def check(value: Any) -> Any:
        if value is not None and value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    return check


def _click_class(name: str) -> type:
    """The click exception class ``name`` of the click typer runs on: found through typer.BadParameter's bases,
    which is public in every typer (click's BadParameter before 0.28, typer's vendored copy since)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise LookupError(name)


def usage_error_code(error: BaseException, commands: Sequence[str]) -> int | None:
    """Print a click/typer usage error as one line on stderr and return its exit code (None: not one)."""
    import sys

    if isinstance(error, typer.Exit):
        return int(getattr(error, "exit_code", 0) or 0)
    if isinstance(error, typer.Abort):
        print("netdiff: aborted", file=sys.stderr)
        return 130
    if not isinstance(error, _click_class("ClickException")):
        return None
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help())
        return 2
    message = error.format_message().strip().replace("\n", " ")
    if message.startswith("No such command") and "Did you mean" not in message:
        unknown = message.split("'")[1] if message.count("'") >= 2 else ""
        close = difflib.get_close_matches(unknown, list(commands), n=1)
        if close:
            message += f" Did you mean '{close[0]}'?"
    hint = ""
    if ctx is not None and isinstance(error, _click_class("UsageError")):
        usage = ctx.get_usage().strip().replace("\n", " ")
        usage = usage[len("Usage: "):] if usage.startswith("Usage: ") else usage
        hint = f" (usage: {' '.join(usage.split())}; '{ctx.command_path} -h' for help)"
    print(f"netdiff: error: {message}{hint}", file=sys.stderr)
    return int(getattr(error, "exit_code", 2) or 2)
