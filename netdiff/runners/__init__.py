"""Model runners. Each import line below registers one model format."""

from netdiff.runners.base import InputSpec, Model, find_runner, load_model, register_runner, runner_names

from netdiff.runners import onnxrt  # noqa: E402,F401  (registration)
from netdiff.runners import caffe  # noqa: E402,F401

__all__ = ["InputSpec", "Model", "find_runner", "load_model", "register_runner", "runner_names"]
