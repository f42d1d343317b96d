"""Convert any readable dump into a netdiff dump directory or a Polygraphy RunResults JSON."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdiff._io import check_output_dir, check_output_file
from netdiff.errors import NetdiffError
from netdiff.types import Dump, Tensor

#: Output formats of :func:`convert_dump`.
TARGETS = ("netdiff", "polygraphy")


class ConvertError(NetdiffError):
    """A conversion request is inconsistent (unknown output format, bad option)."""


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_dump` wrote.

    Attributes:
        output: Path written (directory for netdiff, file for polygraphy).
        to: Output format.
        source_format: Registry key of the reader used.
        tensors: Number of tensors written.
        target_only: Number of device-internal tensors included.
    """

    output: Path
    to: str
    source_format: str
    tensors: int
    target_only: int


def output_format(out: str | os.PathLike[str], to: str | None) -> str:
    """Resolve the output format: ``to`` when given, else ``polygraphy`` for a ``.json`` path, else ``netdiff``."""
    if to is None:
        return "polygraphy" if Path(out).suffix.lower() == ".json" else "netdiff"
    if to not in TARGETS:
        raise ConvertError(f"unknown output format {to!r}; choose one of: {', '.join(TARGETS)}")
    return to


def convert_dump(source: str | os.PathLike[str], out: str | os.PathLike[str], *, source_format: str | None = None,
                 to: str | None = None, options: Mapping[str, Any] | None = None, force: bool = False,
                 runner_name: str = "netdiff", on_tensor: Callable[[Tensor], None] | None = None) -> ConvertResult:
    """Read ``source`` with any registered reader and write it as ``to``.

    Args:
        source: Dump file or directory (format detected unless ``source_format``).
        out: Output directory (netdiff) or file (polygraphy).
        source_format: Reader key to force (see ``netdiff.readers.reader_names()``).
        to: "netdiff" or "polygraphy"; by default chosen from ``out``'s suffix.
        options: Reader options (e.g. ``{"side": "runtime"}``).
        force: Write into a non-empty directory / overwrite an existing file.
        runner_name: Runner name recorded in a Polygraphy output.
        on_tensor: Called after each tensor is written (progress).

    Returns:
        What was written.

    Raises:
        DumpFormatError: The source cannot be read.
        OutputError: The output exists or cannot be written.
    """
    from netdiff.readers import read_dump

    target = output_format(out, to)
    if target == "polygraphy":
        check_output_file(out, "--out", force=force)
    else:
        check_output_dir(out, "--out", force=force)
    dump = read_dump(source, source_format, **dict(options or {}))
    if target == "polygraphy":
        from netdiff.writers.polygraphy_json import write_polygraphy_json

        written = write_polygraphy_json(_Progress(dump, on_tensor), out, runner_name=runner_name, force=force)
    else:
        from netdiff.manifest import write_dump

        meta = dict(dump.meta)
        meta.setdefault("converted_from", dump.format)
        if dump.target_only:
            meta["target_only"] = list(dump.target_only)
        written = write_dump(dump, out, force=force, meta=meta, on_tensor=on_tensor)
    return ConvertResult(Path(written), target, dump.format, len(dump), len(dump.target_only))


class _Progress(Dump):
    """A Dump view that reports each tensor after the writer has loaded it."""

    def __init__(self, dump: Dump, on_tensor: Callable[[Tensor], None] | None):
        super().__init__(tensors=dump.tensors, source=dump.source, format=dump.format,
                         graph_inputs=dump.graph_inputs, graph_outputs=dump.graph_outputs,
                         meta=dump.meta, target_only=dump.target_only)
        self._on_tensor = on_tensor

    def __iter__(self):
        for tensor in self.tensors.values():
            yield tensor
            if self._on_tensor is not None:
                self._on_tensor(tensor)
