"""The JSON report: a stable, versioned schema (docs/json-report.md)."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from netdiff import __version__
from netdiff._io import write_text_atomic
from netdiff.errors import NetdiffError
from netdiff._input_files import (need_dict, need_int, need_int_list, need_list, need_number, need_str,
                                  need_str_list)
from netdiff.types import (METRIC_NAMES, SEVERITIES, STATUSES, Finding, LayerMetrics, LayerResult, Match, Report,
                           Thresholds, Transform, _json_number, _jsonable)

SCHEMA_VERSION = 1


def report_to_json(report: Report) -> dict[str, Any]:
    """Return the report as plain JSON data (NaN -> null, ±inf -> ±1e308)."""
    return {
        "version": SCHEMA_VERSION,
        "tool": f"netdiff {__version__}",
        "reference": _jsonable(report.reference),
        "target": _jsonable(report.target),
        "inputs": _jsonable(report.inputs),
        "thresholds": {"cosine": report.thresholds.cosine, "rel_l2": report.thresholds.rel_l2,
                       "noise_factor": report.thresholds.noise_factor},
        "first_divergence": report.first_divergence,
        "origins": list(report.origins),
        "findings": [f.to_dict() for f in report.findings],
        "summary": report.summary(),
        "meta": _jsonable(report.meta),
        "layers": [layer_to_json(layer) for layer in report.layers],
    }


def layer_to_json(layer: LayerResult) -> dict[str, Any]:
    """One layer entry of the JSON report."""
    match = layer.match
    transform = match.transform if match is not None else None
    return {
        "name": layer.name,
        "target_name": layer.target_name,
        "op_type": layer.op_type,
        "order": layer.order,
        "status": layer.status,
        "introduced": layer.introduced,
        "error_gain": _json_number(layer.error_gain) if layer.error_gain is not None else None,
        "metrics": layer.metrics.as_dict() if layer.metrics is not None else None,
        "expected_rel_l2": _json_number(layer.expected_rel_l2) if layer.expected_rel_l2 is not None else None,
        "notes": list(layer.metrics.notes) if layer.metrics is not None else [],
        "alignment": {
            "method": match.method if match is not None else "unmatched",
            "layout": transform.description if transform is not None else None,
            "permutation": list(transform.permutation) if transform is not None and transform.permutation else None,
            "reason": match.reason if match is not None else "",
        },
        "shape": list(layer.shape) if layer.shape is not None else None,
        "target_shape": list(layer.target_shape) if layer.target_shape is not None else None,
        "inputs": list(layer.inputs),
        "reason": layer.reason,
        "extra": _jsonable(layer.extra),
    }


def write_json(report: Report, path: str | os.PathLike[str]) -> None:
    """Write the JSON report atomically."""
    write_text_atomic(path, dumps_report(report_to_json(report)))


def dumps_report(data: dict[str, Any]) -> str:
    """JSON text with one line per top-level key and one line per layer: readable and diff-friendly,
    and written by json's C encoder (indenting every level runs the pure-Python encoder, which took
    ~24 ms for a 70-layer report, 7 ms this way)."""
    def dump(value: Any) -> str:
        return json.dumps(value, allow_nan=False)

    lines = []
    for key, value in data.items():
        if key == "layers" and value:
            rows = ",\n".join(f"  {dump(layer)}" for layer in value)
            lines.append(f" {dump(key)}: [\n{rows}\n ]")
        else:
            lines.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


class JsonText(str):
    """The JSON report's text (what :meth:`Report.to_json` returns).

    ``Report.to_json()`` used to return the data itself; code that indexes the result like a dict
    (``["layers"]``, ``.get``, ``.keys``, ``.items``, ``.values``) keeps working with a
    DeprecationWarning pointing at :meth:`Report.to_dict`.
    """

    def _data(self) -> dict[str, Any]:
        warnings.warn("Report.to_json() returns the JSON text now; use Report.to_dict() for the data",
                      DeprecationWarning, stacklevel=3)
        return json.loads(self)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self._data()[key]
        return str.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data().get(key, default)

    def keys(self) -> Any:
        return self._data().keys()

    def items(self) -> Any:
        return self._data().items()

    def values(self) -> Any:
        return self._data().values()


def report_from_json(data: dict[str, Any] | str) -> Report:
    """Rebuild a :class:`Report` from its JSON form or text (to re-render a saved report).

    Raises:
        NetdiffError: The data is not a netdiff JSON report of a known version, or a field has
            the wrong type (the message names it).
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise NetdiffError(f"not valid JSON ({e})") from e
    if not isinstance(data, dict) or "layers" not in data or "version" not in data:
        raise NetdiffError("not a netdiff JSON report (needs \"version\" and \"layers\")")
    if data["version"] != SCHEMA_VERSION:
        raise NetdiffError(f"JSON report version {str(data['version'])[:40]!r} is not supported "
                           f"(expected {SCHEMA_VERSION})")
    check_report_json(data)
    try:
        layers = [_layer_from_json(x) for x in data["layers"]]
        findings = [Finding(kind=f["kind"], layer=f.get("layer"), severity=f["severity"], message=f["message"],
                            evidence=f.get("evidence") or {}, suggestion=f.get("suggestion", ""))
                    for f in data.get("findings", [])]
        th = data.get("thresholds") or {}
        return Report(reference=data.get("reference") or {}, target=data.get("target") or {},
                      thresholds=Thresholds(cosine=float(th.get("cosine", 0.99)), rel_l2=float(th.get("rel_l2", 0.05)),
                                            noise_factor=float(th.get("noise_factor", Thresholds.noise_factor))),
                      layers=layers, first_divergence=data.get("first_divergence"),
                      origins=list(data.get("origins") or []), findings=findings,
                      inputs=data.get("inputs") or {}, meta=data.get("meta") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NetdiffError(f"malformed netdiff JSON report ({type(e).__name__}: {e})") from e


def check_report_json(data: dict[str, Any]) -> None:
    """Type-check the fields of a JSON report that rendering reads (one line naming the field).

    Raises:
        NetdiffError: A field has the wrong type or value.
    """
    e = NetdiffError
    for key in ("reference", "target", "inputs", "meta", "thresholds"):
        if data.get(key) is not None:
            need_dict(data[key], f"\"{key}\"", e)
    for key in ("cosine", "rel_l2"):
        need_number((data.get("thresholds") or {}).get(key), f"\"thresholds.{key}\"", e, optional=True, finite=True)
    for key in ("graph_outputs", "target_only"):
        if (data.get("meta") or {}).get(key) is not None:
            need_str_list(data["meta"][key], f"\"meta.{key}\"", e)
    names = set()
    for i, layer in enumerate(need_list(data["layers"], "\"layers\"", e)):
        names.update(_check_layer(need_dict(layer, f"layers[{i}]", e), f"layers[{i}]"))
    first = need_str(data.get("first_divergence"), "\"first_divergence\"", e, optional=True)
    if first is not None and first not in names:
        raise e(f"\"first_divergence\": {first[:80]!r} is not one of the layers")
    need_str_list(data.get("origins") or [], "\"origins\"", e)
    for i, f in enumerate(need_list(data.get("findings") or [], "\"findings\"", e)):
        where = f"findings[{i}]"
        need_dict(f, where, e)
        for key in ("kind", "message"):
            need_str(f.get(key), f"{where}.{key}", e)
        need_str(f.get("layer"), f"{where}.layer", e, optional=True)
        need_str(f.get("suggestion", ""), f"{where}.suggestion", e)
        if f.get("severity") not in SEVERITIES:
            raise e(f"{where}.severity: expected one of {', '.join(SEVERITIES)}, got {str(f.get('severity'))[:40]!r}")
        need_dict(f.get("evidence") or {}, f"{where}.evidence", e)


def _check_layer(x: dict[str, Any], where: str) -> tuple[str, ...]:
    e = NetdiffError
    name = need_str(x.get("name"), f"{where}.name", e)
    target = need_str(x.get("target_name"), f"{where}.target_name", e, optional=True)
    need_str(x.get("op_type"), f"{where}.op_type", e, optional=True)
    need_int(x.get("order"), f"{where}.order", e, optional=True)
    if x.get("status") not in STATUSES:
        raise e(f"{where}.status: expected one of {', '.join(STATUSES)}, got {str(x.get('status'))[:40]!r}")
    metrics = x.get("metrics")
    if metrics:
        need_dict(metrics, f"{where}.metrics", e)
        for key in METRIC_NAMES:
            need_number(metrics.get(key), f"{where}.metrics.{key}", e, optional=True)
    need_str_list(x.get("notes") or [], f"{where}.notes", e)
    need_number(x.get("error_gain"), f"{where}.error_gain", e, optional=True)
    for key in ("shape", "target_shape"):
        if x.get(key) is not None:
            need_int_list(x[key], f"{where}.{key}", e, lo=0)
    need_str(x.get("reason", ""), f"{where}.reason", e)
    need_str_list(x.get("inputs") or [], f"{where}.inputs", e)
    al = x.get("alignment")
    if al:
        need_dict(al, f"{where}.alignment", e)
        if al.get("permutation"):
            need_int_list(al["permutation"], f"{where}.alignment.permutation", e, lo=0, hi=64)
        for key in ("layout", "method", "reason"):
            need_str(al.get(key), f"{where}.alignment.{key}", e, optional=True)
    extra = need_dict(x.get("extra") or {}, f"{where}.extra", e)
    iso = extra.get("isolated")
    if iso is not None:
        need_number(need_dict(iso, f"{where}.extra.isolated", e).get("cosine"), f"{where}.extra.isolated.cosine", e,
                    optional=True)
    return (name,) if target is None else (name, target)


def _layer_from_json(x: dict[str, Any]) -> LayerResult:
    al = x.get("alignment") or {}
    perm = al.get("permutation")
    transform = Transform(permutation=tuple(perm) if perm else None, description=al.get("layout") or "none") \
        if al.get("layout") is not None else None
    match = Match(x["name"] if x.get("status") != "missing_in_reference" else None, x.get("target_name"),
                  al.get("method", "unmatched"), transform, reason=al.get("reason", ""))
    metrics = None
    if x.get("metrics"):
        metrics = LayerMetrics.from_dict({**x["metrics"], "notes": x.get("notes", [])})
    gain = x.get("error_gain")
    expected = x.get("expected_rel_l2")
    return LayerResult(name=x["name"], target_name=x.get("target_name"), op_type=x.get("op_type"),
                       order=x.get("order"), status=x["status"], metrics=metrics, match=match,
                       introduced=bool(x.get("introduced")), error_gain=float(gain) if gain is not None else None,
                       shape=tuple(x["shape"]) if x.get("shape") is not None else None,
                       target_shape=tuple(x["target_shape"]) if x.get("target_shape") is not None else None,
                       reason=x.get("reason", ""), inputs=tuple(x.get("inputs") or ()), extra=x.get("extra") or {},
                       expected_rel_l2=float(expected) if expected is not None else None)
