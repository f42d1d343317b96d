"""A JSON parser that keeps long strings on disk: it returns their byte offsets, not their text.

Polygraphy stores every array as a base64 string inside one JSON document, so its files reach
hundreds of MB. :func:`scan_json` parses the structure of such a file once, memory-mapped, and
replaces each string longer than ``keep`` bytes by a :class:`StrRef` (start and end offsets of
its raw content). :func:`read_ref` reads one of them back when a tensor is actually loaded.
"""

from __future__ import annotations

import json
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = ((b"true", True), (b"false", False), (b"null", None), (b"NaN", float("nan")),
             (b"Infinity", float("inf")), (b"-Infinity", float("-inf")))
_MAX_DEPTH = 200
_MAX_NUMBER = 400  # characters: dims, counts and runtimes are far shorter; int() refuses 4,300 digits


class JsonScanError(ValueError):
    """The document is not valid JSON; ``pos`` is the byte offset of the problem."""

    def __init__(self, message: str, pos: int, truncated: bool = False):
        super().__init__(message)
        self.pos = pos
        self.truncated = truncated


@dataclass(frozen=True)
class StrRef:
    """A JSON string left in the file: raw bytes ``[start, end)`` between its quotes."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of raw (still escaped) bytes."""
        return self.end - self.start


def scan_json(path: Path, keep: int = 256) -> Any:
    """Parse the JSON file ``path``; strings longer than ``keep`` bytes become :class:`StrRef`.

    Raises:
        JsonScanError: Invalid or truncated JSON.
        OSError: The file cannot be read.
    """
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            raise JsonScanError("the file is empty", 0, truncated=True)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            parser = _Parser(data, keep)
            value, pos = parser.value(parser.skip(0), 0)
            pos = parser.skip(pos)
            if pos != len(data):
                raise JsonScanError("extra data after the JSON document", pos)
            return value


def read_ref(path: Path, ref: StrRef) -> bytes:
    """Return the decoded bytes of a kept string as latin-1-compatible ASCII (escapes resolved)."""
    with open(path, "rb") as handle:
        handle.seek(ref.start)
        raw = handle.read(ref.length)
    if len(raw) != ref.length:
        raise JsonScanError("the file is shorter than when it was read", ref.start + len(raw), truncated=True)
    if b"\\" in raw:
        return json.loads(b'"' + raw + b'"').encode("latin-1")
    return raw


def read_ref_prefix(path: Path, ref: StrRef, count: int) -> bytes:
    """Return the first ``count`` raw bytes of a kept string (no escape handling)."""
    with open(path, "rb") as handle:
        handle.seek(ref.start)
        return handle.read(min(count, ref.length))


def read_ref_suffix(path: Path, ref: StrRef, count: int) -> bytes:
    """Return the last ``count`` raw bytes of a kept string."""
    count = min(count, ref.length)
    with open(path, "rb") as handle:
        handle.seek(ref.end - count)
        return handle.read(count)


class _Parser:
    def __init__(self, data: mmap.mmap, keep: int):
        self.data = data
        self.keep = keep
        self.size = len(data)

    def skip(self, pos: int) -> int:
        match = _WS.match(self.data, pos)
        return match.end() if match else pos

    def _eof(self, pos: int, what: str) -> JsonScanError:
        return JsonScanError(f"the document ends inside {what}", pos, truncated=True)

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= self.size:
            raise self._eof(pos, "a value")
        if depth > _MAX_DEPTH:
            raise JsonScanError(f"nesting deeper than {_MAX_DEPTH} levels", pos)
        char = self.data[pos:pos + 1]
        if char == b"{":
            return self.object(pos + 1, depth + 1)
        if char == b"[":
            return self.array(pos + 1, depth + 1)
        if char == b'"':
            return self.string(pos + 1)
        for token, literal in _LITERALS:
            if self.data[pos:pos + len(token)] == token:
                return literal, pos + len(token)
        match = _NUMBER.match(self.data, pos)
        if match and match.end() > pos:
            text = match.group().decode("ascii")
            if len(text) > _MAX_NUMBER:
                raise JsonScanError(f"a number of {len(text):,} characters (at most {_MAX_NUMBER} accepted)", pos)
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return number, match.end()
        raise JsonScanError(f"unexpected character {char!r}", pos)

    def object(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        pos = self.skip(pos)
        if self.data[pos:pos + 1] == b"}":
            return result, pos + 1
        while True:
            if pos >= self.size:
                raise self._eof(pos, "an object")
            if self.data[pos:pos + 1] != b'"':
                raise JsonScanError("expected a string key", pos)
            key, pos = self.string(pos + 1, force=True)
            pos = self.skip(pos)
            if pos >= self.size:
                raise self._eof(pos, "an object")
            if self.data[pos:pos + 1] != b":":
                raise JsonScanError("expected ':' after a key", pos)
            result[key], pos = self.value(self.skip(pos + 1), depth)
            pos = self.skip(pos)
            char = self.data[pos:pos + 1]
            if char == b"}":
                return result, pos + 1
            if not char:
                raise self._eof(pos, "an object")
            if char != b",":
                raise JsonScanError("expected ',' or '}' in an object", pos)
            pos = self.skip(pos + 1)

    def array(self, pos: int, depth: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        pos = self.skip(pos)
        if self.data[pos:pos + 1] == b"]":
            return result, pos + 1
        while True:
            item, pos = self.value(self.skip(pos), depth)
            result.append(item)
            pos = self.skip(pos)
            char = self.data[pos:pos + 1]
            if char == b"]":
                return result, pos + 1
            if not char:
                raise self._eof(pos, "an array")
            if char != b",":
                raise JsonScanError("expected ',' or ']' in an array", pos)
            pos += 1

    def string(self, start: int, force: bool = False) -> tuple[str | StrRef, int]:
        end = start
        while True:
            end = self.data.find(b'"', end)
            if end < 0:
                raise self._eof(start - 1, "a string")
            backslashes = 0
            while self.data[end - 1 - backslashes] == 0x5C and end - 1 - backslashes >= start:
                backslashes += 1
            if backslashes % 2 == 0:
                break
            end += 1
        if end - start > self.keep and not force:
            return StrRef(start, end), end + 1
        try:
            return json.loads(self.data[start - 1:end + 1]), end + 1
        except (ValueError, UnicodeDecodeError) as e:
            raise JsonScanError(f"invalid string ({e})", start - 1) from e
