"""The model template and runner registry: a runner turns a model file into a :class:`Model`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

import logging

from netdiff._registry import Registry
from netdiff.errors import ModelError
from netdiff.types import Dump

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, shape (None or a string for a dynamic dim) and numpy dtype.

    ``flexible_batch`` says the first dim is only a default (Caffe's ``input_shape``: the net
    reshapes to the batch it is fed); ``flexible_spatial`` says the same of the dims after the
    channel axis (a fully convolutional net run at the input's size: the runner re-infers every
    shape and says clearly when the net does not allow it). A random input uses the declared size.
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str
    flexible_batch: bool = False
    flexible_spatial: bool = False

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """True when an array of ``shape`` can be fed (same rank; fixed dims equal unless flexible)."""
        return len(shape) == len(self.shape) and all(
            not isinstance(d, int) or d == s
            or (s > 0 and ((i == 0 and self.flexible_batch) or (i >= 2 and self.flexible_spatial)))
            for i, (d, s) in enumerate(zip(self.shape, shape)))

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return all(isinstance(d, int) and d > 0 for d in self.shape)


class Model:
    """A model that can be executed with every intermediate tensor captured.

    Subclasses set ``suffixes`` and implement :meth:`input_specs` and :meth:`_run`. Build one
    with :func:`load_model`; construction is cheap, work happens in :meth:`run`.
    """

    name: ClassVar[str] = ""
    #: File suffixes this runner recognises (lower case, with the dot).
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: Keyword options this runner takes (``-O KEY=VALUE``); :func:`load_model` refuses others.
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | Path, **options: Any) -> None:
        self.path = Path(path)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Return True when ``path`` is a model this runner executes."""
        return path.is_file() and path.suffix.lower() in cls.suffixes

    def input_specs(self) -> list[InputSpec]:
        """The inputs the model needs."""
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray], on_tensor: Callable[[str], None] | None) -> Dump:
        raise NotImplementedError

    def run(self, feeds: Mapping[str, np.ndarray], on_tensor: Callable[[str], None] | None = None) -> Dump:
        """Run on ``feeds`` and return every intermediate tensor (graph inputs included)."""
        resized = self.resized_inputs(feeds)
        if resized:
            log.warning("%s", resized)
        dump = self._run(dict(feeds), on_tensor)
        dump.format = dump.format or self.name
        dump.source = dump.source or str(self.path)
        if resized:
            dump.meta["input_resized"] = resized
        return dump

    def resized_inputs(self, feeds: Mapping[str, np.ndarray]) -> str | None:
        """A sentence naming each input fed at another spatial size than the model declares (the
        model is then run at the fed size), or None when every input has its declared size."""
        try:
            specs = self.input_specs()
        except Exception:  # the run reports an unreadable model itself
            return None
        moved = []
        for spec in specs:
            if not spec.flexible_spatial or spec.name not in feeds:
                continue
            shape = tuple(int(d) for d in np.shape(feeds[spec.name]))
            declared = spec.shape
            if len(shape) == len(declared) and any(isinstance(d, int) and d != s
                                                   for d, s in zip(declared[2:], shape[2:])):
                moved.append(f"{spec.name} fed as {list(shape)}, declared {list(declared)}")
        if not moved:
            return None
        return (f"{self.path.name}: run at another input size than it declares ({'; '.join(moved)}): "
                f"every shape is re-inferred at the fed size")

    def onnx_model(self) -> Any:
        """The executed ONNX ModelProto (used to re-run single nodes), or None."""
        return None

    def describe(self) -> dict[str, Any]:
        """Header facts for reports."""
        return {"path": str(self.path), "format": self.name, "kind": "model"}


M = TypeVar("M", bound=type[Model])
_RUNNERS: Registry[type[Model]] = Registry("runner", Model)


def register_runner(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Model` subclass under a kebab-case ``name``."""
    return _RUNNERS.register(name)


def runner_names() -> list[str]:
    """Registered runner keys, sorted."""
    return _RUNNERS.names()


def find_runner(path: str | Path) -> str | None:
    """Return the runner key for a model file, or None when ``path`` is not a model."""
    path = Path(path)
    for key, cls in _RUNNERS.items():
        if cls.sniff(path):
            return key
    return None


def load_model(path: str | Path, format: str | None = None, **options: Any) -> Model:
    """Return a :class:`Model` for ``path`` (format detected from the file unless given).

    Raises:
        ModelError: The file is missing or no runner handles it.
    """
    from netdiff._input_files import check_regular

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    check_regular(path, "model", ModelError)
    key = format or find_runner(path)
    cls = _RUNNERS.get(key) if key is not None else None
    if cls is None:
        known = _RUNNERS.known()
        raise ModelError(f"{path}: not a model netdiff can run (runners: {known})")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(cls.options))
    if unknown:
        known = f" (it takes: {', '.join(cls.options)})" if cls.options else " (it takes none)"
        raise ModelError(f"{path}: option(s) {', '.join(unknown)} do not apply to runner '{key}'{known}")
    return cls(path, **given)
