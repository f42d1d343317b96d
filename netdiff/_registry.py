"""One registry mechanism for readers, runners and simulators: named classes, one decorator each."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Classes of one kind by kebab-case name, in registration order."""

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, C] = {}

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: register ``cls`` under ``name`` and set ``cls.name``."""

        def decorate(cls: C) -> C:
            if not issubclass(cls, self.base):
                raise TypeError(f"{cls.__name__} must subclass {self.base.__name__}")
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def known(self) -> str:
        """The registered names as one wrapped line, for error messages."""
        return textwrap.fill(", ".join(self.names()), 100)

    def get(self, name: str) -> C | None:
        """The class registered under ``name``, or None."""
        return self._classes.get(name)

    def items(self) -> Iterator[tuple[str, C]]:
        """(name, class) pairs in registration order."""
        return iter(list(self._classes.items()))
