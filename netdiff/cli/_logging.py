"""Where the CLI's log messages go: stderr at the -v/-q level, and optionally a --log-file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from netdiff.errors import OutputError

_TAG = "_netdiff_cli"


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"netdiff: {record.levelname.lower()}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (not when the handler was made), each message once."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self._seen: set[tuple[int, str]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.levelno, record.getMessage())
        if key in self._seen:  # e.g. the same input warning for the reference and a target model
            return
        self._seen.add(key)
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(verbose: int = 0, quiet: bool = False, log_file: Path | None = None) -> None:
    """Send the ``netdiff`` loggers to stderr (warnings by default, -v info, -vv debug, -q errors only)
    and, with ``log_file``, every message with a timestamp to that file (appended)."""
    logger = logging.getLogger("netdiff")
    for handler in [h for h in logger.handlers if getattr(h, _TAG, False)]:
        logger.removeHandler(handler)
        handler.close()
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
    stderr = _StderrHandler(sys.stderr)
    stderr.setLevel(level)
    stderr.setFormatter(_StderrFormatter())
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        try:
            file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"--log-file {log_file}: cannot open for writing ({e.strerror or e})") from None
        file.setLevel(logging.DEBUG)
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(file)
    for handler in handlers:
        setattr(handler, _TAG, True)
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))
    from netdiff import progress

    progress.SILENT["enabled"] = quiet  # -q: no progress bar either
