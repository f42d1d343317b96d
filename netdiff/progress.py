"""Progress reporting: the library calls a :class:`Progress`; only the CLI draws a bar."""

from __future__ import annotations

import os
import sys
from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """Receives progress of long steps (dumping, comparing, simulating)."""

    def start(self, task: str, total: int) -> None:
        """A step with ``total`` units begins."""

    def advance(self, units: int = 1) -> None:
        """``units`` more are done."""

    def stop(self) -> None:
        """The step ended."""


class NullProgress:
    """Shows nothing."""

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, units: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    """A rich progress bar on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as _Bar, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = _Bar(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                         console=Console(stderr=True, markup=False), transient=True)
        self._task = None

    def start(self, task: str, total: int) -> None:
        if self._task is None:
            self._bar.start()
        else:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(task, total=total)

    def advance(self, units: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, units)

    def stop(self) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
            self._bar.stop()


#: Set by the CLI's -q: no bar even on a terminal.
SILENT = {"enabled": False}


def terminal_progress() -> Progress:
    """A bar when stderr is a terminal and not under CI (nor -q), otherwise silence."""
    if not SILENT["enabled"] and sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb":
        return RichProgress()
    return NullProgress()
