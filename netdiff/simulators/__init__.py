"""Target simulators. Each import line below registers one target kind."""

from netdiff.simulators.base import Simulator, get_simulator, register_simulator, simulator_names

from netdiff.simulators import nnie  # noqa: E402,F401  (registration)
from netdiff.simulators import fp16  # noqa: E402,F401
from netdiff.simulators import int8  # noqa: E402,F401

__all__ = ["Simulator", "get_simulator", "register_simulator", "simulator_names"]
