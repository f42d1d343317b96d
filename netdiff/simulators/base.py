"""The simulator template and registry: a simulator predicts a target's dump without hardware."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from netdiff._lazy import lazy_import
from netdiff._registry import Registry
from netdiff.errors import NetdiffError
from netdiff.types import Dump

np = lazy_import("numpy")  # imported on first use: `netdiff --help` lists the simulators without it


Feeds = Mapping[str, "np.ndarray"]


class Simulator:
    """Base of every target simulator (fp16, int8, nnie8, ...).

    Subclasses implement :meth:`_simulate`: given the float ONNX model, the inputs and calibration
    samples, return the target :class:`Dump` whose tensor names are the *reference* (float model)
    names wherever the target still has that tensor.
    """

    name: ClassVar[str] = ""
    #: One-line description shown in ``--help``.
    summary: ClassVar[str] = ""
    #: True when calibration samples are required.
    needs_calibration: ClassVar[bool] = False
    #: Simulator-specific options: keyword -> one-line help.
    options: ClassVar[dict[str, str]] = {}

    def _simulate(self, model: Any, feeds: Feeds, calibration: Sequence[Feeds], **options: Any) -> Dump:
        raise NotImplementedError

    def simulate(self, model: Any, feeds: Feeds, calibration: Sequence[Feeds] = (), **options: Any) -> Dump:
        """Run the simulated target on ``feeds``.

        Args:
            model: The float ONNX ModelProto.
            feeds: Inputs by name.
            calibration: Calibration samples (each a dict of inputs); the feeds are used when empty.
            **options: Simulator-specific options (see ``options``).
        """
        unknown = set(options) - set(self.options)
        if unknown:
            raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to target '{self.name}'")
        if self.needs_calibration and not calibration:
            calibration = [feeds]
        dump = self._simulate(model, feeds, list(calibration), **options)
        dump.format = dump.format or f"simulated-{self.name}"
        return dump


S = TypeVar("S", bound=type[Simulator])
_SIMULATORS: Registry[type[Simulator]] = Registry("simulator", Simulator)


def register_simulator(name: str) -> Callable[[S], S]:
    """Class decorator: register a :class:`Simulator` under a kebab-case ``name``."""
    return _SIMULATORS.register(name)


def simulator_names() -> list[str]:
    """Registered simulator keys, sorted."""
    return _SIMULATORS.names()


def get_simulator(name: str) -> Simulator:
    """Return a simulator by key (the error lists the known ones)."""
    cls = _SIMULATORS.get(name)
    if cls is None:
        raise NetdiffError(f"unknown target kind '{name}'; known: {_SIMULATORS.known()}")
    return cls()
