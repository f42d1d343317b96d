"""Model inputs: parse ``--input`` values, load arrays, or make a seeded random input."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._input_files import check_regular
from netdiff._io import load_npy
from netdiff.errors import DumpFormatError, InputError
from netdiff.runners.base import InputSpec

log = logging.getLogger(__name__)

#: What a user may pass as inputs: None, an array or path, a dict name -> array or path.
InputsLike = Any


def parse_input_args(values: Sequence[str]) -> dict[str, str] | str | None:
    """Turn repeated ``--input`` values into a dict (``NAME=FILE``) or a single path.

    Raises:
        InputError: Named and unnamed values are mixed, or a name repeats.
    """
    if not values:
        return None
    named: dict[str, str] = {}
    plain: list[str] = []
    for value in values:
        name, sep, file = value.partition("=")
        if sep and name and not Path(value).exists():
            if name in named:
                raise InputError(f"--input {name} is given twice")
            named[name] = file
        else:
            plain.append(value)
    if named and plain:
        raise InputError("use either NAME=FILE for every --input or a single FILE, not both")
    if len(plain) > 1:
        raise InputError("several unnamed --input values: name them as NAME=FILE")
    return named or plain[0]


def load_array(source: Any, what: str = "input") -> np.ndarray:
    """Load one array from an ndarray, a .npy path or a single-member .npz path."""
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            if path.exists():
                check_regular(path, what)
            raise InputError(f"{what}: {path} does not exist")
        if path.suffix.lower() == ".npz":
            arrays = load_npz(path)
            if len(arrays) != 1:
                raise InputError(f"{path}: an .npz input must hold one array (found {len(arrays)}); "
                                 "use NAME=FILE.npy for each input")
            return next(iter(arrays.values()))
        try:
            return np.asarray(load_npy(path, mmap=False))
        except DumpFormatError as e:
            raise InputError(str(e)) from e
    try:
        return np.asarray(source)
    except Exception as e:
        raise InputError(f"{what}: cannot be turned into an array ({type(source).__name__})") from e


def resolve_feeds(specs: Sequence[InputSpec], inputs: InputsLike = None, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Build the feed dict for a model.

    Args:
        specs: The model's inputs.
        inputs: None (seeded random input), an array or path (single-input models), or a dict
            name -> array or path. A ``.npz`` path may hold one array per input name.
        seed: Seed of the random input.

    Returns:
        (feeds, description of each input for the report).

    Raises:
        InputError: Inputs are missing, unknown, unreadable or do not fit the model.
    """
    by_name = {s.name: s for s in specs}
    if inputs is None:
        return _random_feeds(specs, seed)
    if isinstance(inputs, (str, Path)) and Path(inputs).suffix.lower() == ".npz" and len(specs) > 1:
        inputs = load_npz(Path(inputs))
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise InputError(f"the model has {len(specs)} inputs ({', '.join(by_name)}): pass NAME=FILE for each")
        inputs = {specs[0].name: inputs}
    unknown = [n for n in inputs if n not in by_name]
    if unknown:
        raise InputError(f"unknown input {', '.join(unknown)}; the model's inputs are: {', '.join(by_name)}")
    missing = [n for n in by_name if n not in inputs]
    if missing:
        raise InputError(f"missing input(s) {', '.join(missing)}; the model needs: "
                         + ", ".join(f"{s.name}{list(s.shape)}" for s in specs))
    feeds, described = {}, {}
    for name, source in inputs.items():
        array = load_array(source, f"input {name}")
        feeds[name] = fit_to_spec(array, by_name[name])
        described[name] = str(source) if isinstance(source, (str, Path)) else f"array{list(array.shape)}"
    return feeds, described


def fit_to_spec(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Check an array against an input spec; add a missing batch dim of 1 and cast the dtype."""
    original = array
    shape = tuple(array.shape)
    batch_free = spec.shape and (spec.shape[0] == 1 or not isinstance(spec.shape[0], int) or spec.flexible_batch)
    if batch_free and len(shape) == len(spec.shape) - 1:
        array = array[np.newaxis]
        shape = tuple(array.shape)
    if not spec.accepts(shape):
        raise InputError(f"input {spec.name}: shape {list(original.shape)} does not fit the model's "
                         f"{list(spec.shape)}" + _layout_hint(original, spec))
    if array.dtype != np.dtype(spec.dtype):
        wanted = np.dtype(spec.dtype)
        if array.dtype.kind == "f" and wanted.kind in "iub":
            raise InputError(f"input {spec.name}: float data given for a {spec.dtype} input")
        if wanted.kind == "f" and (array.dtype.kind in "iub" or array.dtype.itemsize > wanted.itemsize):
            log.warning("input %s: %s data cast to %s for the model%s", spec.name, array.dtype.name, wanted.name,
                        " (values kept as they are: scale or normalize them first if the model expects it)"
                        if array.dtype.kind in "iub" else " (precision beyond it is lost)")
        array = array.astype(spec.dtype)
    return np.ascontiguousarray(array)


def _layout_hint(array: np.ndarray, spec: InputSpec) -> str:
    """"; it looks like HWC ..." when the array's axes in another order fit the spec, else ""."""
    import itertools

    shape = tuple(array.shape)
    if not 2 <= len(shape) <= 5:
        return ""
    for perm in itertools.permutations(range(len(shape))):
        moved = tuple(shape[i] for i in perm)
        if perm == tuple(range(len(shape))) or not _fits(moved, spec):
            continue
        channels_last = (len(shape) in (3, 4) and perm[len(shape) - 3] == len(shape) - 1
                         and [i for i in perm if i != len(shape) - 1] == list(range(len(shape) - 1)))
        looks = {3: "HWC (channels last)", 4: "NHWC (channels last)"}[len(shape)] if channels_last else \
            "the model's axes in another order"
        to = {3: "CHW", 4: "NCHW"}[len(shape)] if channels_last else "the model's order"
        return (f"; it looks like {looks}: transpose it to {to}, e.g. np.transpose(x, {perm}) "
                f"-> {[shape[i] for i in perm]}")
    return ""


def _fits(shape: tuple[int, ...], spec: InputSpec) -> bool:
    if len(shape) == len(spec.shape) - 1:
        shape = (1, *shape)
    return len(shape) == len(spec.shape) and all(not isinstance(d, int) or d == m for d, m in zip(spec.shape, shape))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file by name (never unpickled; each member budgeted before inflating)."""
    from netdiff._npz import load_all

    return load_all(path, InputError)


def _random_feeds(specs: Sequence[InputSpec], seed: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    dynamic = [s for s in specs if not s.is_static]
    if dynamic:
        s = dynamic[0]
        raise InputError(f"input {s.name} has dynamic shape {list(s.shape)}: pass a concrete input with "
                         f"--input {s.name}=FILE.npy")
    rng = np.random.default_rng(seed)
    feeds, described = {}, {}
    for s in specs:
        dtype = np.dtype(s.dtype)
        if dtype.kind == "f":
            value = rng.standard_normal(s.shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.integers(0, 2, s.shape).astype(dtype)
        else:
            value = rng.integers(0, 10, s.shape).astype(dtype)
        feeds[s.name] = value
        described[s.name] = f"random(seed={seed})"
    log.warning("no input given: using a seeded random input (seed=%d) of the declared shape", seed)
    return feeds, described
