"""Reader for Polygraphy ``RunResults`` JSON (``polygraphy run --save-outputs``).

Layout (Polygraphy 0.53, ``polygraphy/comparator/struct.py`` + ``json/serde.py``)::

    {"lst": [[runner_name, [{"outputs": {name: {"values": {"array": "<base64 .npy>",
                                                            "polygraphy_class": "ndarray"},
                                                 "polygraphy_class": "LazyArray"}},
                              "runtime": float | null, "runner_name": str,
                              "polygraphy_class": "IterationResult"}, ...]], ...],
     "polygraphy_class": "RunResults"}

An extensionless ``--save-outputs DIR`` writes one such document per iteration
(``0000000000.json``, ...). Older files use ``LazyNumpyArray``, bare ``ndarray`` outputs, the legacy
``__polygraphy_encoded_<type>`` markers, latin-1 array strings or a base64 ``.npz``; all are read.
Arrays are decoded only when a tensor is loaded; the JSON structure is parsed once, keeping only
the byte offsets of the base64 strings.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._io import NPY_ERRORS, check_npy_shape, read_npy_header, read_npy_stream
from netdiff._npz import check_budget
from netdiff.errors import DumpFormatError
from netdiff.readers._json_scan import JsonScanError, StrRef, read_ref, read_ref_prefix, read_ref_suffix, scan_json
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

_MAGIC = b"\x93NUMPY"
_CLASS = "polygraphy_class"
_LEGACY = "__polygraphy_encoded_"


@register_reader("polygraphy")
class PolygraphyJsonReader(Reader):
    """A Polygraphy RunResults JSON file, or a directory of per-iteration RunResults files."""

    priority = 10
    options = {
        "runner": "Runner to read, by name or 0-based index (default: the first).",
        "iteration": "Iteration to read, 0-based; negative counts from the end (default: 0).",
    }

    def sniff(self, path: Path) -> bool:
        if path.is_dir():
            files = _iteration_files(path)
            return bool(files) and files[0].stem.isdigit() and _looks_like_run_results(files[0])
        return path.is_file() and _looks_like_run_results(path)

    def _read(self, path: Path, runner: str | int = 0, iteration: str | int = 0, **options: Any) -> Dump:
        index = _as_int(iteration, path, "iteration")
        files = _iteration_files(path) if path.is_dir() else [path]
        if not files:
            raise DumpFormatError(f"{path}: directory holds no Polygraphy *.json files")
        runs = _load_run_results(files[0])
        names = [name for name, _ in runs]
        runner_name = _pick_runner(runs, runner, files[0])
        found = _find_iteration(files, runs, runner_name, index)
        if found is None:
            raise DumpFormatError(f"{path}: runner {runner_name!r} has no iteration {index} "
                                  f"(it has {_count_iterations(files, runs, runner_name)})")
        file, record, position = found
        tensors = _tensors(file, record, runner_name, position)
        require_readable(tensors)
        meta = {"polygraphy_runner": runner_name, "polygraphy_iteration": position,
                "polygraphy_runners": names}
        if isinstance(record.get("runtime"), (int, float)) and math.isfinite(record["runtime"]):
            meta["runtime_s"] = float(record["runtime"])
        return Dump(tensors=tensors, source=str(path), format=self.name, meta=meta)


def _iteration_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if p.is_file())


def _looks_like_run_results(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
            size = handle.seek(0, 2)
            handle.seek(max(0, size - 512))
            tail = handle.read()
    except OSError:
        return False
    head = head.lstrip()
    return head.startswith(b"{") and b'"lst"' in head and b"RunResults" in tail


def _as_int(value: str | int, path: Path, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DumpFormatError(f"{path}: option {what}={value!r} is not an integer") from None


def _load_run_results(file: Path) -> list[tuple[str, list[Any]]]:
    try:
        data = scan_json(file)
    except JsonScanError as e:
        kind = "truncated" if e.truncated else "invalid"
        raise DumpFormatError(f"{file}: {kind} Polygraphy JSON at byte {e.pos} ({e})") from e
    except OSError as e:
        raise DumpFormatError(f"{file}: cannot read ({e.strerror})") from e
    if not isinstance(data, dict) or not isinstance(data.get("lst"), list) or not _is_class(data, "RunResults"):
        raise DumpFormatError(f"{file}: not a Polygraphy RunResults document "
                              "(expected {\"lst\": [...], \"polygraphy_class\": \"RunResults\"})")
    runs = []
    for i, entry in enumerate(data["lst"]):
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or not isinstance(entry[1], list)):
            raise DumpFormatError(f"{file}: RunResults entry {i} is not [runner_name, [iterations]]")
        runs.append((entry[0], entry[1]))
    return runs


def _is_class(obj: dict[str, Any], name: str) -> bool:
    return obj.get(_CLASS) == name or f"{_LEGACY}{name}" in obj


def _pick_runner(runs: list[tuple[str, list[Any]]], runner: str | int, file: Path) -> str:
    names = [name for name, _ in runs]
    if not names:
        raise DumpFormatError(f"{file}: RunResults holds no runners")
    if isinstance(runner, str) and runner in names:
        return runner
    try:
        index = int(runner)
    except (TypeError, ValueError):
        raise DumpFormatError(f"{file}: no runner {runner!r}; runners: {', '.join(names)}") from None
    if not -len(names) <= index < len(names):
        raise DumpFormatError(f"{file}: runner index {index} out of range; runners: {', '.join(names)}")
    return names[index]


def _runner_iterations(runs: list[tuple[str, list[Any]]], name: str) -> list[Any]:
    return next((its for runner, its in runs if runner == name), [])


def _find_iteration(files: list[Path], first: list[tuple[str, list[Any]]], runner: str,
                    index: int) -> tuple[Path, dict[str, Any], int] | None:
    if index < 0:
        index += _count_iterations(files, first, runner)
        if index < 0:
            return None
    seen = 0
    for i, file in enumerate(files):
        runs = first if i == 0 else _load_run_results(file)
        iterations = _runner_iterations(runs, runner)
        if index < seen + len(iterations):
            record = iterations[index - seen]
            if not isinstance(record, dict) or not isinstance(record.get("outputs"), dict):
                raise DumpFormatError(f"{file}: iteration {index} of runner {runner!r} is not an "
                                      "IterationResult (expected an object with \"outputs\")")
            return file, record, index
        seen += len(iterations)
    return None


def _count_iterations(files: list[Path], first: list[tuple[str, list[Any]]], runner: str) -> int:
    return sum(len(_runner_iterations(first if i == 0 else _load_run_results(f), runner))
               for i, f in enumerate(files))


def _tensors(file: Path, record: dict[str, Any], runner: str, iteration: int) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for order, (name, value) in enumerate(record["outputs"].items()):
        where = f"{file}: output {name!r} of runner {runner!r}, iteration {iteration}"
        try:
            payload = _array_payload(value, where)
            shape, dtype = _peek(file, payload, where)
        except DumpFormatError as e:  # one bad output: listed as unreadable, the others are still read
            tensors[name] = Tensor.unreadable(name, str(e), str(file))
            continue
        tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name, order=order, source=str(file),
                               loader=functools.partial(_load, file, payload, where),
                               meta={"runner": runner, "iteration": iteration})
    return tensors


def _array_payload(value: Any, where: str) -> StrRef | str:
    for _ in range(3):  # LazyArray -> ndarray -> payload
        if not isinstance(value, dict):
            break
        if "array" in value and isinstance(value["array"], (str, StrRef)):
            return value["array"]
        if "tensor" in value:
            raise DumpFormatError(f"{where}: holds a torch.Tensor (pickled); only numpy arrays are read")
        if "values" in value:
            value = value["values"]
            continue
        break
    raise DumpFormatError(f"{where}: not an encoded array (expected {{\"values\": {{\"array\": \"<base64>\"}}}})")


def _peek(file: Path, payload: StrRef | str, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header, decoding only the first few hundred characters."""
    if isinstance(payload, StrRef):
        head = _b64(read_ref_prefix(file, payload, 16))
        if head is not None and head.startswith(_MAGIC) and len(head) >= 10:
            hlen = int.from_bytes(head[8:10], "little") + 10 if head[6] == 1 else int.from_bytes(head[8:12], "little") + 12
            chars = -(-hlen // 3) * 4
            if chars > payload.length:
                raise DumpFormatError(f"{where}: truncated array (base64 shorter than its .npy header)")
            header = _b64(read_ref_prefix(file, payload, chars))
            if header is None:
                raise DumpFormatError(f"{where}: corrupt array (invalid base64)")
            shape, dtype, _, _ = _npy_header(header[:hlen], where)
            padding = read_ref_suffix(file, payload, 2).count(b"=")
            available = payload.length // 4 * 3 - padding
            needed = hlen + math.prod(shape) * dtype.itemsize
            if payload.length % 4 or available < needed:
                raise DumpFormatError(f"{where}: truncated array ({max(available - hlen, 0)} data bytes, "
                                      f"header {shape} {dtype.name} needs {needed - hlen})")
            return shape, dtype
    array = _load(file, payload, where)  # legacy encodings: decode once to learn the shape
    return tuple(int(d) for d in array.shape), array.dtype


def _b64(raw: bytes) -> bytes | None:
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def _npy_header(data: bytes, where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Parse a .npy header at the start of ``data``: shape, dtype, Fortran order, data offset."""
    stream = io.BytesIO(data)
    try:
        shape, fortran, dtype = read_npy_header(stream)
    except NPY_ERRORS as e:
        raise DumpFormatError(f"{where}: corrupt .npy header ({(str(e) or type(e).__name__).splitlines()[0]})") from e
    offset = stream.tell()
    shape, dtype = check_npy_shape(where, shape, dtype, offset, offset + (1 << 62))  # sizes are checked by callers
    return shape, dtype, fortran, offset


def _load(file: Path, payload: StrRef | str, where: str) -> np.ndarray:
    try:
        raw = read_ref(file, payload) if isinstance(payload, StrRef) else payload.encode("latin-1")
    except (JsonScanError, OSError, UnicodeEncodeError, ValueError) as e:
        raise DumpFormatError(f"{where}: cannot read the array ({e})") from e
    data = _b64(raw)
    if data is None or not (data.startswith(_MAGIC) or data.startswith(b"PK")):
        data = raw  # Polygraphy before base64: the .npy bytes as a latin-1 string
    if data.startswith(b"PK"):
        return _first_npz_array(data, where)
    if not data.startswith(_MAGIC):
        raise DumpFormatError(f"{where}: corrupt array (neither base64 .npy nor .npz)")
    shape, dtype, fortran, offset = _npy_header(data, where)
    count = math.prod(shape)
    if len(data) - offset < count * dtype.itemsize:
        raise DumpFormatError(f"{where}: truncated array ({len(data) - offset} data bytes, "
                              f"header {shape} {dtype.name} needs {count * dtype.itemsize})")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


def _first_npz_array(data: bytes, where: str) -> np.ndarray:
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [i for i in archive.infolist() if i.filename.endswith(".npy")]
            if not members:
                raise DumpFormatError(f"{where}: empty .npz payload")
            check_budget(members[0], where, len(data))
            with archive.open(members[0]) as handle:  # header checked against the member size first
                head = handle.read(min(members[0].file_size, 100_000 + 12))
            shape, dtype, _, offset = _npy_header(head, where)
            check_npy_shape(where, shape, dtype, offset, members[0].file_size)
            with archive.open(members[0]) as handle:
                return read_npy_stream(handle, where, members[0].file_size)
    except DumpFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, *NPY_ERRORS) as e:
        raise DumpFormatError(f"{where}: corrupt .npz payload ({(str(e) or type(e).__name__).splitlines()[0]})") from e
