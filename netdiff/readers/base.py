"""The reader template and registry: one module per dump format, one registration line each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from netdiff._input_files import check_file_or_directory
from netdiff._registry import Registry
from netdiff.errors import DumpFormatError
from netdiff.types import Dump


class Reader:
    """Base of every dump reader.

    Subclasses set ``name`` (through :func:`register_reader`), implement :meth:`sniff` and
    :meth:`_read`, and may declare ``options`` they accept (name -> help). :meth:`read`
    validates the path and the returned :class:`Dump` in one place.
    """

    name: ClassVar[str] = ""
    #: Higher wins when several readers recognise the same path.
    priority: ClassVar[int] = 0
    #: Reader-specific options: keyword name -> one-line help.
    options: ClassVar[dict[str, str]] = {}

    def sniff(self, path: Path) -> bool:
        """Return True when ``path`` looks like this format (cheap: names and headers only)."""
        raise NotImplementedError

    def _read(self, path: Path, **options: Any) -> Dump:
        raise NotImplementedError

    def read(self, path: str | Path, **options: Any) -> Dump:
        """Read ``path`` into a :class:`Dump` (data stays lazy).

        Raises:
            DumpFormatError: The path is missing or not a valid dump of this format.
        """
        path = Path(path)
        check_file_or_directory(path, "dump", DumpFormatError)
        unknown = set(k for k, v in options.items() if v is not None) - set(self.options)
        if unknown:
            raise DumpFormatError(f"{path}: option(s) {', '.join(sorted(unknown))} do not apply to "
                                  f"format '{self.name}'")
        dump = self._read(path, **{k: v for k, v in options.items() if v is not None})
        return _checked(dump, path, self.name)


def _checked(dump: Dump, path: Path, name: str) -> Dump:
    if not isinstance(dump, Dump):
        raise TypeError(f"reader {name} returned {type(dump).__name__}, not Dump")
    if not dump.format:
        dump.format = name
    if not dump.source:
        dump.source = str(path)
    for key, tensor in dump.tensors.items():
        if key != tensor.name:
            raise TypeError(f"reader {name}: tensor key {key!r} differs from its name {tensor.name!r}")
    if not dump.tensors:
        raise DumpFormatError(f"{path}: no tensors found in this {name} dump")
    return dump


R = TypeVar("R", bound=type[Reader])
_READERS: Registry[type[Reader]] = Registry("reader", Reader)


def register_reader(name: str) -> Callable[[R], R]:
    """Class decorator: register a :class:`Reader` subclass under a kebab-case ``name``."""
    return _READERS.register(name)


def reader_names() -> list[str]:
    """Registered reader keys, sorted."""
    return _READERS.names()


def get_reader(name: str) -> Reader:
    """Return a reader instance by key.

    Raises:
        DumpFormatError: No reader has that key (the message lists the known ones).
    """
    cls = _READERS.get(name)
    if cls is None:
        raise DumpFormatError(f"unknown dump format '{name}'; known formats: {_READERS.known()}")
    return cls()


def detect_format(path: str | Path) -> str:
    """Return the key of the reader that recognises ``path``.

    Raises:
        DumpFormatError: No reader recognises it (the message lists the formats tried).
    """
    path = Path(path)
    check_file_or_directory(path, "dump", DumpFormatError)
    hits = []
    for key, cls in _READERS.items():
        try:
            if cls().sniff(path):
                hits.append((cls.priority, key))
        except OSError:
            continue
    if not hits:
        raise DumpFormatError(f"{path}: not a recognised dump (tried: {', '.join(reader_names())}); "
                              "name the format explicitly to force one")
    return max(hits)[1]


def read_dump(path: str | Path, format: str | None = None, **options: Any) -> Dump:
    """Read a dump, detecting its format unless ``format`` is given."""
    key = format or detect_format(path)
    return get_reader(key).read(path, **options)
