"""The om-JSON fusion map (``atc --mode=1 --om=model.om --json=model.json``).

Each op of the om graph may carry ``_datadump_original_op_names`` (the original framework nodes
fused into it); each output desc may carry ``_datadump_origin_name``,
``_datadump_origin_output_index``, ``_datadump_origin_format`` and ``origin_shape``. Rules (as the
official msaccucmp applies them):

- attribute absent: the op is its own original (identity);
- attribute present with an empty list: an NPU-only op (Cast, TransData, Transpose inserted by
  ATC) with no framework equivalent;
- one op with several originals (many-to-one): its output holds the value of the original named
  by ``_datadump_origin_name`` (else the last original);
- several ops with one original (one-to-many): only the op whose output desc names the original
  (else the last by ``id``) holds its value; the others are inner nodes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdiff._input_files import load_json, need_dict, need_int, need_list, need_str
from netdiff.ascend.names import escape_name
from netdiff.errors import AlignmentError

#: Op types that only exist on the device (listed, never compared).
NPU_ONLY_TYPES = frozenset({"TransData", "TransDataRNN", "Aipp", "AippData", "NetOutput"})
#: Op types that run no task, so they never appear in a dump (ignored when grouping originals).
NO_TASK_TYPES = frozenset({"Const", "Constant", "Data", "NetOutput"})
#: Names ATC gives the ops it inserts (format/dtype conversions around unsupported layouts).
INSERTED_NAME = re.compile(r"^trans_|_Input\d+_TransposeBefore$|_Output\d+TransposeAfter$")
DEFAULT_PRECISION_MODE = "force_fp16"


def _value(value: Any, where: str) -> Any:
    """Python value of an om-JSON attr value ({"s": ..}, {"i": ..}, {"list": {"s": [..]}}, ...)."""
    if not isinstance(value, dict):
        return None
    for key in ("s", "i", "b", "f"):
        if key in value:
            return value[key]
    if "list" in value:
        lst = value["list"] if value["list"] is not None else {}
        if not isinstance(lst, dict):
            raise AlignmentError(f"{where}.list: expected an object, got {type(lst).__name__}")
        for key in ("s", "i", "b", "f"):
            if key in lst:
                return list(need_list(lst[key], f"{where}.list.{key}", AlignmentError))
        return []
    return None


def attrs_of(obj: dict[str, Any], where: str = "om JSON") -> dict[str, Any]:
    """An om-JSON object's ``attr`` list as a dict key -> Python value."""
    out = {}
    items = obj.get("attr")
    for i, item in enumerate(need_list(items, f"{where}.attr", AlignmentError) if items is not None else []):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = _value(item.get("value"), f"{where}.attr[{i}] ({item['key'][:80]!r}).value")
    return out


def _int(value: Any, where: str, optional: bool = False, lo: int = -2**63) -> int | None:
    """An om-JSON integer: a JSON number or a decimal string (protobuf's JSON form of int64)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 20:
        value = int(value)
    return need_int(value, where, AlignmentError, optional=optional, lo=lo, hi=2**63 - 1)


def _ints(value: Any, where: str) -> tuple[int, ...]:
    return tuple(_int(d, f"{where}[{i}]") for i, d in enumerate(need_list(value, where, AlignmentError)))


def _opt_str(value: Any, where: str) -> str | None:
    return need_str(value, where, AlignmentError, optional=True) or None


@dataclass(frozen=True)
class OutputInfo:
    """One output desc of an om op."""

    origin_name: str | None
    origin_index: int | None
    origin_format: str | None
    origin_shape: tuple[int, ...]
    dtype: str | None
    layout: str | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class OpInfo:
    """One op of the om graph."""

    name: str
    type: str
    id: int
    inputs: tuple[str, ...]
    original_op_names: tuple[str, ...] | None
    outputs: tuple[OutputInfo, ...]
    is_multiop: bool = False
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Origin:
    """Where one NPU output tensor comes from in the original graph.

    Attributes:
        names: Original names; the last holds the value (empty for NPU-only / inner tensors).
        output_index: Output index of the last original node.
        format: Original layout (``_datadump_origin_format``, else ``origin_format``).
        shape: Original shape (``origin_shape``), empty when unknown.
        relation: "one-to-one", "many-to-one", "one-to-many", "many-to-many", "npu-only" or "inner".
    """

    names: tuple[str, ...]
    output_index: int
    format: str | None
    shape: tuple[int, ...]
    relation: str


def _output_info(desc: Any, where: str) -> OutputInfo:
    need_dict(desc, where, AlignmentError)
    a = attrs_of(desc, where)
    shape_obj = desc.get("shape")
    dims = need_dict(shape_obj, f"{where}.shape", AlignmentError).get("dim") if shape_obj is not None else None
    origin_shape = a.get("origin_shape")
    origin_format = a.get("_datadump_origin_format") or a.get("origin_format")
    index = a.get("_datadump_origin_output_index")
    return OutputInfo(origin_name=_opt_str(a.get("_datadump_origin_name"), f"{where}: _datadump_origin_name"),
                      origin_index=_int(index, f"{where}: _datadump_origin_output_index", optional=True, lo=0),
                      origin_format=_opt_str(origin_format, f"{where}: origin_format"),
                      origin_shape=_ints(origin_shape, f"{where}: origin_shape") if origin_shape is not None else (),
                      dtype=_opt_str(desc.get("dtype"), f"{where}.dtype"),
                      layout=_opt_str(desc.get("layout"), f"{where}.layout"),
                      shape=_ints(dims, f"{where}.shape.dim") if dims is not None else ())


def _op_info(op: dict[str, Any], position: int, where: str) -> OpInfo:
    name = need_str(op["name"], f"{where}.name", AlignmentError)
    where = f"{where} ({name[:80]!r})"
    a = attrs_of(op, where)
    originals = a.get("_datadump_original_op_names")
    if originals is not None:
        need_list(originals, f"{where}: _datadump_original_op_names", AlignmentError)
    op_id = _int(op.get("id"), f"{where}.id", optional=True)
    inputs = op.get("input")
    inputs = need_list(inputs, f"{where}.input", AlignmentError) if inputs is not None else []
    descs = op.get("output_desc")
    descs = need_list(descs, f"{where}.output_desc", AlignmentError) if descs is not None else []
    return OpInfo(name=name, type=need_str(op.get("type", ""), f"{where}.type", AlignmentError, optional=True) or "",
                  id=op_id or position,
                  inputs=tuple(need_str(x, f"{where}.input[{i}]", AlignmentError, optional=True) or ""
                               for i, x in enumerate(inputs)),
                  original_op_names=None if "_datadump_original_op_names" not in a else
                  tuple(need_str(x, f"{where}: _datadump_original_op_names[{i}]", AlignmentError, optional=True)
                        for i, x in enumerate(originals or []) if x),
                  outputs=tuple(_output_info(d, f"{where}.output_desc[{i}]") for i, d in enumerate(descs)),
                  is_multiop=bool(a.get("_datadump_is_multiop")), attrs=a)


class FusionMap:
    """The ops of an om JSON and how their outputs map to the original graph."""

    def __init__(self, data: dict[str, Any], source: str = "<om json>") -> None:
        if not isinstance(data, dict) or not isinstance(data.get("graph"), list):
            raise AlignmentError(f"{source}: not an om JSON (expected an object with a 'graph' list, as "
                                 "`atc --mode=1 --om=model.om --json=model.json` writes)")
        self.source = source
        self.name: str = need_str(data.get("name"), f"{source}: name", AlignmentError, optional=True) or ""
        self.attrs = attrs_of(data, source)
        self.ops: dict[str, OpInfo] = {}
        for g, graph in enumerate(data["graph"]):
            where = f"{source}: graph[{g}]"
            ops = need_dict(graph, where, AlignmentError).get("op") if graph is not None else None
            for position, op in enumerate(need_list(ops, f"{where}.op", AlignmentError) if ops is not None else []):
                if not isinstance(op, dict) or not op.get("name"):
                    continue
                info = _op_info(op, position, f"{where}.op[{position}]")
                self.ops.setdefault(info.name, info)
        self.by_escaped = {escape_name(n): op for n, op in self.ops.items()}
        self._holders = self._value_holders()

    @classmethod
    def load(cls, path: str | Path) -> FusionMap:
        """Read an om JSON file.

        Raises:
            AlignmentError: The file is missing, not JSON, or not an om JSON.
        """
        path = Path(path)
        return cls(load_json(path, "fusion map (om JSON)", AlignmentError), str(path))

    def originals(self, op: OpInfo) -> tuple[str, ...]:
        """Original op names of ``op`` (identity when the attribute is absent)."""
        return (op.name,) if op.original_op_names is None else op.original_op_names

    def _value_holders(self) -> dict[str, str]:
        """For each original fused into or split across several ops: the op holding its value."""
        groups: dict[str, list[OpInfo]] = {}
        for op in self.ops.values():
            names = self.originals(op)
            if len(names) == 1 and op.type not in NPU_ONLY_TYPES | NO_TASK_TYPES:
                groups.setdefault(names[0], []).append(op)
        holders = {}
        for original, ops in groups.items():
            ops = sorted(ops, key=lambda o: o.id)
            explicit = [o for o in ops if any(d.origin_name == original for d in o.outputs)]
            holders[original] = (explicit or ops)[-1].name
        return holders

    def group_size(self, original: str) -> int:
        """Number of non-NPU-only ops that stand for ``original`` alone."""
        skip = NPU_ONLY_TYPES | NO_TASK_TYPES
        return sum(1 for op in self.ops.values() if self.originals(op) == (original,) and op.type not in skip)

    def origin(self, op: OpInfo, output_index: int) -> Origin:
        """Where output ``output_index`` of ``op`` comes from in the original graph."""
        desc = op.outputs[output_index] if output_index < len(op.outputs) else (op.outputs[0] if op.outputs else None)
        fmt = desc.origin_format if desc else None
        shape = desc.origin_shape if desc else ()
        originals = self.originals(op)
        inserted = op.original_op_names is None and INSERTED_NAME.search(op.name)
        if not originals or op.type in NPU_ONLY_TYPES or inserted:
            return Origin((), 0, fmt, shape, "npu-only")
        explicit = desc.origin_name if desc else None
        index = desc.origin_index if desc and desc.origin_index is not None else output_index
        if len(originals) > 1:
            holder = explicit or originals[-1]
            names = tuple(n for n in originals if n != holder) + (holder,)
            return Origin(names, index, fmt, shape, "many-to-one")
        original = originals[0]
        if self.group_size(original) > 1:
            if (op.is_multiop and not explicit) or self._holders.get(original) != op.name:
                return Origin((), 0, fmt, shape, "inner")
            return Origin((explicit or original,), index, fmt, shape, "one-to-many")
        return Origin((explicit or original,), index, fmt, shape, "one-to-one")

    def input_origin(self, op: OpInfo, input_index: int) -> Origin | None:
        """Origin of input ``input_index`` of ``op`` when it is a model input (a ``Data`` op), else None."""
        if input_index >= len(op.inputs):
            return None
        producer_name, _, idx = op.inputs[input_index].rpartition(":")
        producer = self.ops.get(producer_name)
        if producer is None or producer.type != "Data" or not idx.isdigit():
            return None
        desc = producer.outputs[0] if producer.outputs else None
        return Origin((producer.name,), int(idx), desc.origin_format if desc else None,
                      desc.origin_shape if desc else (), "graph-input")

    # ------------------------------------------------------------------ model-level facts

    @property
    def atc_cmdline(self) -> str | None:
        """The ``atc`` command line the om was built with, when recorded."""
        value = self.attrs.get("atc_cmdline")
        return str(value) if value else None

    def precision_mode(self) -> tuple[str, str]:
        """(precision mode, where it came from): ``--precision_mode(_v2)`` or the ATC default."""
        cmdline = self.atc_cmdline or ""
        try:
            tokens = shlex.split(cmdline)
        except ValueError:
            tokens = cmdline.split()
        found: dict[str, str] = {}
        for i, token in enumerate(tokens):
            m = re.match(r"^--(precision_mode(?:_v2)?)(?:=(.*))?$", token)
            if m:
                value = m.group(2) if m.group(2) is not None else (tokens[i + 1] if i + 1 < len(tokens) else "")
                found[m.group(1)] = value
        if "precision_mode_v2" in found:
            return found["precision_mode_v2"], "atc_cmdline (--precision_mode_v2)"
        if "precision_mode" in found:
            return found["precision_mode"], "atc_cmdline (--precision_mode)"
        where = "ATC default (atc_cmdline has no --precision_mode)" if cmdline else "ATC default (no atc_cmdline in the om JSON)"
        return DEFAULT_PRECISION_MODE, where

    def output_nodes(self) -> list[tuple[str, int]]:
        """Model outputs from ``attr_model_out_nodes_name`` ("op:index:outputN") as (op, index)."""
        result = []
        entries = self.attrs.get("attr_model_out_nodes_name")
        for entry in entries if isinstance(entries, list) else []:
            parts = str(entry).split(":")
            if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
                result.append((parts[0], int(parts[1])))
        return result

    def aipp_text(self) -> str | None:
        """The AIPP configuration embedded in the model (op attr ``aipp_config_path``), if any."""
        for op in self.ops.values():
            text = op.attrs.get("aipp_config_path")
            if isinstance(text, str) and "aipp_op" in text:
                return text
        return None
