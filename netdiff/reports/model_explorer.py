"""Per-node metrics as Google Model Explorer "node data" JSON, to colour the graph there.

Format (model_explorer ``node_data_builder.GraphNodeData``; the UI's
``NodeDataProviderGraphData``): ``{"name", "results": {node_key: {"value": number}},
"thresholds": [{"value", "bgColor"}], ...}``. A node key is a node id (for ONNX models loaded
with the ONNX adapter: the node name) or an output tensor name. Threshold items are upper
bounds: a value ``<= value`` takes that item's colour, checked in order. With ``graph_id`` the
data is wrapped as ``ModelNodeData`` (``{graph_id: GraphNodeData}``); the ONNX adapter uses the
ONNX graph's name as the graph id.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from netdiff._io import write_text_atomic
from netdiff.types import Report

#: Colours for the cosine overlay (lowest first).
BAD = "#d32f2f"
POOR = "#ff8a65"
GOOD = "#81c784"


def node_key(layer_name: str, extra: dict[str, Any]) -> str:
    """The Model Explorer key of a layer: its producing node's name when known, else the tensor name."""
    node = extra.get("node") if isinstance(extra, dict) else None
    return str(node) if node else layer_name


def node_data(report: Report, graph_id: str | None = None) -> dict[str, Any]:
    """Return per-node cosine as Model Explorer node data.

    A node with several compared outputs gets its worst cosine. Layers that were not compared
    (missing, shape mismatch, unreadable) have no value and keep Model Explorer's default colour.

    Args:
        report: The comparison report.
        graph_id: Wrap the data for this graph id (ModelNodeData); None gives the bare
            per-graph form (GraphNodeData).
    """
    results: dict[str, dict[str, float]] = {}
    for layer in report.layers:
        if layer.metrics is None or layer.status == "missing_in_reference":
            continue
        cosine = layer.metrics.cosine
        if isinstance(cosine, float) and math.isnan(cosine):
            cosine = -1.0
        value = round(min(1.0, max(-1.0, float(cosine))), 6)
        key = node_key(layer.name, layer.extra)
        if key not in results or value < results[key]["value"]:
            results[key] = {"value": value}
    th = report.thresholds.cosine
    below = _just_below(th)
    graph = {
        "name": "netdiff cosine",
        "results": results,
        "thresholds": [
            {"value": round(max(-1.0, th - 0.05), 6), "bgColor": BAD},
            {"value": below, "bgColor": POOR},
            {"value": 1.0, "bgColor": GOOD},
        ],
    }
    return {graph_id: graph} if graph_id else graph


def write_node_data(report: Report, path: str | os.PathLike[str], graph_id: str | None = None) -> None:
    """Write :func:`node_data` as JSON atomically."""
    write_text_atomic(path, json.dumps(node_data(report, graph_id), indent=1, allow_nan=False) + "\n")


def _just_below(value: float) -> float:
    """The largest 6-decimal number below ``value`` (diverged means cosine < threshold)."""
    return round(math.ceil(value * 1e6) / 1e6 - 1e-6, 6)
