"""Progress bars show on a terminal only: never when piped or under CI."""

from __future__ import annotations

import sys

from netdiff.progress import NullProgress, RichProgress, terminal_progress


class _Tty:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_bar_on_a_terminal_only(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert isinstance(terminal_progress(), RichProgress)
    monkeypatch.setenv("CI", "true")
    assert isinstance(terminal_progress(), NullProgress)


def test_silent_when_piped(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    progress = terminal_progress()  # pytest captures stderr: not a terminal
    assert isinstance(progress, NullProgress)
    progress.start("x", 3)
    progress.advance()
    progress.stop()
    assert capsys.readouterr().err == ""
