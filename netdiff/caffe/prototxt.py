"""A tolerant protobuf text-format parser that keeps every field by name.

Caffe forks reuse field numbers for different parameters, so the deploy ``.prototxt`` is read
without any schema: each message becomes a :class:`Message`, an ordered multimap of field name
to values (int, float, bool, str or a nested :class:`Message`). Enum values (``pool: MAX``)
are kept as strings. Comments (``#``), ``:``-less sub-messages, ``<...>`` delimiters,
``[a, b]`` lists, adjacent string concatenation and ``;``/``,`` separators are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netdiff._input_files import read_capped
from netdiff.errors import ModelError

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![A-Za-z_]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:\[\],;])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "?": "?"}


class Message:
    """An ordered multimap of field name to values, as written in the text file."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[tuple[str, Any]] | None = None) -> None:
        self.fields: list[tuple[str, Any]] = fields if fields is not None else []

    def __repr__(self) -> str:
        return f"Message({self.to_dict()!r})"

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self.fields)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def add(self, name: str, value: Any) -> None:
        """Append one value for ``name``."""
        self.fields.append((name, value))

    def getall(self, name: str) -> list[Any]:
        """Every value of ``name`` in file order (a repeated field)."""
        return [v for k, v in self.fields if k == name]

    def get(self, name: str, default: Any = None) -> Any:
        """The last value of ``name`` (protobuf semantics for a singular field), or ``default``."""
        for k, v in reversed(self.fields):
            if k == name:
                return v
        return default

    def sub(self, name: str) -> Message:
        """The sub-message ``name`` (an empty Message when absent)."""
        value = self.get(name)
        return value if isinstance(value, Message) else Message()

    def names(self) -> list[str]:
        """Distinct field names in first-seen order."""
        return list(dict.fromkeys(k for k, _ in self.fields))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form: a field seen once maps to its value, a repeated field to a list."""
        result: dict[str, Any] = {}
        for name in self.names():
            values = [v.to_dict() if isinstance(v, Message) else v for v in self.getall(name)]
            result[name] = values[0] if len(values) == 1 else values
        return result


def _tokens(text: str, source: str) -> Iterator[tuple[str, str, int]]:
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            snippet = text[pos:pos + 20].splitlines()[0] if text[pos:pos + 20].strip() else text[pos:pos + 1]
            raise ModelError(f"{source}:{line}: cannot parse prototxt near {snippet!r}")
        kind = m.lastgroup or ""
        value = m.group()
        if kind != "space":
            yield kind, value, line
        line += value.count("\n")
        pos = m.end()


def _unquote(token: str, source: str, line: int) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt].encode()
            i += 2
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(), 8) & 0xFF)
            i += 1 + len(m.group())
        elif nxt in "xX" and re.match(r"[0-9a-fA-F]", body[i + 2:i + 3]):
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        else:
            raise ModelError(f"{source}:{line}: unknown escape \\{nxt} in string")
    return out.decode("utf-8", errors="replace")


def _number(token: str) -> int | float:
    if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", token):
        return int(token, 16)
    if re.fullmatch(r"[-+]?\d+", token):
        return int(token, 10)
    return float(token.rstrip("fF"))


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.toks = list(_tokens(text, source))
        self.i = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _next(self, what: str) -> tuple[str, str, int]:
        tok = self._peek()
        if tok is None:
            last = self.toks[-1][2] if self.toks else 1
            raise ModelError(f"{self.source}:{last}: prototxt ends early (expected {what})")
        self.i += 1
        return tok

    def _fail(self, tok: tuple[str, str, int], expected: str) -> ModelError:
        return ModelError(f"{self.source}:{tok[2]}: expected {expected} in prototxt, found {tok[1]!r}")

    def message(self, closer: str | None) -> Message:
        msg = Message()
        while True:
            tok = self._peek()
            if tok is None:
                if closer is None:
                    return msg
                self._next(f"'{closer}'")
            kind, value, _ = tok
            if closer is not None and kind == "punct" and value == closer:
                self.i += 1
                return msg
            if kind == "punct" and value in ";,":
                self.i += 1
                continue
            if kind != "ident" or value.startswith("-"):
                raise self._fail(tok, "a field name" + (f" or '{closer}'" if closer else ""))
            self.i += 1
            self._field(msg, value)

    def _field(self, msg: Message, name: str) -> None:
        tok = self._next(f"':' or '{{' after {name}")
        colon = tok[0] == "punct" and tok[1] == ":"
        if colon:
            tok = self._next(f"a value for {name}")
        if tok[0] == "punct" and tok[1] == "[":
            if not colon:
                raise self._fail(tok, f"':' before the list of {name}")
            self._list(msg, name)
            return
        if tok[0] == "punct" and tok[1] in "{<":
            msg.add(name, self.message("}" if tok[1] == "{" else ">"))
            return
        if not colon:
            raise self._fail(tok, f"':' or '{{' after {name}")
        msg.add(name, self._scalar(tok, name))

    def _list(self, msg: Message, name: str) -> None:
        while True:
            tok = self._next(f"a value or ']' in the list of {name}")
            if tok[0] == "punct" and tok[1] == "]":
                return
            if tok[0] == "punct" and tok[1] == ",":
                continue
            if tok[0] == "punct" and tok[1] in "{<":
                msg.add(name, self.message("}" if tok[1] == "{" else ">"))
            else:
                msg.add(name, self._scalar(tok, name))

    def _scalar(self, tok: tuple[str, str, int], name: str) -> Any:
        kind, value, line = tok
        if kind == "string":
            text = _unquote(value, self.source, line)
            while (nxt := self._peek()) is not None and nxt[0] == "string":
                self.i += 1
                text += _unquote(nxt[1], self.source, nxt[2])
            return text
        if kind == "number":
            return _number(value)
        if kind == "ident":
            low = value.lower()
            if low in ("true", "t"):
                return True
            if low in ("false", "f"):
                return False
            if low in ("inf", "infinity", "-inf", "-infinity", "nan", "-nan"):
                return float(low.replace("infinity", "inf"))
            return value
        raise self._fail(tok, f"a value for {name}")


def parse_prototxt(text: str, source: str = "<prototxt>") -> Message:
    """Parse protobuf text format into a :class:`Message` tree.

    Raises:
        ModelError: The text is not well-formed (one line naming the file and line number).
    """
    return _Parser(text, source).message(None)


def read_prototxt(path: str | Path) -> Message:
    """Read and parse a ``.prototxt`` file.

    Raises:
        ModelError: The file cannot be read, is not UTF-8 text, or is malformed.
    """
    path = Path(path)
    try:
        data = read_capped(path, "prototxt", 256 * 2**20, ModelError)
    except OSError as e:
        raise ModelError(f"{path}: cannot read prototxt ({e.strerror or e})") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: not a text prototxt (invalid UTF-8 at byte {e.start}; "
                         "is it a binary caffemodel?)") from e
    return parse_prototxt(text, str(path))
