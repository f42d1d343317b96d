"""Is a target dump named by Caffe blob or by layer? (decides how in-place layers align)

With in-place layers (``conv`` → ReLU writing back into blob ``conv``) a Caffe net has one blob for
several layer outputs. The Caffe reference keeps every layer's output (named by layer) and, in
``meta["blobs"]``, each blob's writers in order: the blob's final value is its last writer's output.
A dump named by blob (the NNIE mapper and simulator, many device tools) holds only that final
value under the blob's name, which is also the first writer's layer name: read by layer, the
post-ReLU ``conv`` would be compared with the pre-ReLU convolution output and look broken.

:func:`resolve_naming` decides, in this order: the user's choice (``--naming blob|layer``), the
target reader's own statement (``meta["tensor_names"]``), then evidence from the dump itself:
names only blobs have or only in-place layers have, then the values of the in-place blobs (each
compared with the blob's first and last writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netdiff.errors import InputError
from netdiff.types import Dump

NAMINGS = ("blob", "layer")
#: In-place blobs whose values are checked (each costs two comparisons).
MAX_CHECKED = 16


@dataclass(frozen=True)
class Naming:
    """How the target names its tensors.

    Attributes:
        tensor_names: "blob", "layer", or None (not a question for this pair: no in-place blobs).
        source: "option", "reader", "names", "values" or "none".
        evidence: One sentence on why.
    """

    tensor_names: str | None
    source: str
    evidence: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For ``report.meta["naming"]``."""
        return {"tensor_names": self.tensor_names, "source": self.source, "evidence": self.evidence}


def resolve_naming(reference: Dump, target: Dump, naming: str | None = None) -> Naming:
    """Decide the target's naming (see the module docstring).

    Raises:
        InputError: ``naming`` is not "blob", "layer" or None.
    """
    if naming is not None and naming not in NAMINGS:
        raise InputError(f"--naming must be blob or layer, not {naming!r}")
    if naming is not None:
        return Naming(naming, "option", f"--naming {naming}")
    stated = target.meta.get("tensor_names")
    if stated in NAMINGS:
        return Naming(str(stated), "reader", f"the {target.format or 'target'} reader names tensors by {stated}")
    blobs = reference.meta.get("blobs")
    if not isinstance(blobs, dict) or not blobs:
        return Naming(None, "none")
    inplace = {b: list(w) for b, w in blobs.items() if isinstance(w, list) and len(w) > 1}
    if not inplace:
        return Naming(None, "none")
    return _from_names(reference, target, blobs, inplace) or _from_values(reference, target, inplace) \
        or Naming(None, "none", "no evidence either way: aligned by name")


def _from_names(reference: Dump, target: Dump, blobs: dict, inplace: dict[str, list[str]]) -> Naming | None:
    later = {w for ws in inplace.values() for w in ws[1:] if w not in blobs}
    layer_only = sorted(n for n in target.names if n in later)
    blob_only = sorted(n for n in target.names if n in blobs and n not in reference)
    if layer_only and not blob_only:
        return Naming("layer", "names", f"the target has outputs of in-place layers ({_few(layer_only)}), "
                                        "which a blob-named dump cannot hold")
    if blob_only and not layer_only:
        return Naming("blob", "names", f"the target has blob names that are no layer output ({_few(blob_only)})")
    return None


def _from_values(reference: Dump, target: Dump, inplace: dict[str, list[str]]) -> Naming | None:
    from netdiff.align import reconcile_shapes

    votes = {"blob": [], "layer": []}
    checked = 0
    for blob, writers in inplace.items():
        if blob not in target or writers[0] != blob or checked >= MAX_CHECKED:
            continue
        first, last = writers[0], writers[-1]
        if first not in reference or last not in reference:
            continue
        try:
            transform, _, _ = reconcile_shapes(reference[last], target[blob])
            if transform is None:
                continue
            t = np.asarray(transform.apply(target[blob].load(), tuple(reference[last].shape)), dtype=np.float64)
            e_first = _rel(t, np.asarray(reference[first].load(), dtype=np.float64))
            e_last = _rel(t, np.asarray(reference[last].load(), dtype=np.float64))
        except Exception:  # unreadable data: no vote (the layer gets status "error")
            continue
        checked += 1
        if e_last < 0.5 * e_first:
            votes["blob"].append(f"{blob} = {last}")
        elif e_first < 0.5 * e_last:
            votes["layer"].append(f"{blob} = {first}")
    if len(votes["blob"]) > len(votes["layer"]):
        return Naming("blob", "values", f"{len(votes['blob'])} of {checked} in-place blobs hold the blob's final value, "
                                        f"not the first layer's output ({_few(votes['blob'])})")
    if len(votes["layer"]) > len(votes["blob"]):
        return Naming("layer", "values", f"{len(votes['layer'])} of {checked} in-place blobs hold the first layer's "
                                         f"output, not the blob's final value ({_few(votes['layer'])})")
    return None


def _rel(t: np.ndarray, r: np.ndarray) -> float:
    if t.shape != r.shape:
        return float("inf")
    keep = np.isfinite(t) & np.isfinite(r)
    scale = float(np.linalg.norm(r[keep])) or 1.0
    return float(np.linalg.norm(t[keep] - r[keep])) / scale


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
