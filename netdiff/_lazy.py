"""Import heavy modules on first attribute access, so `netdiff --help` stays fast."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._real: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr == "_real":
            raise AttributeError(attr)
        if self._real is None:
            self._real = importlib.import_module(self.__name__)
        value = getattr(self._real, attr)
        setattr(self, attr, value)  # later lookups find it directly: no cost in hot loops
        return value


def lazy_import(name: str) -> Any:
    """Return a stand-in for module ``name`` that imports it on first use."""
    return _LazyModule(name)
