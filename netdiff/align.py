"""Pair target tensors with reference tensors, by name only, and reconcile their layouts.

Rules, in order (the first that applies wins, and every Match records which):

1. ``map``: the user's mapping file ``{target_name: reference_name}``.
2. ``fusion-map``: the target tensor's ``origin_names`` (from a converter's fusion map); the
   last entry is the original tensor or node whose value it holds.
3. ``blob``: the target names tensors by Caffe blob; the blob's last in-place writer is paired,
   the earlier writers are marked not observable.
4. ``exact``: identical names.
5. ``normalized``: names equal after toolchain escaping (``/ . \\ : space -`` to ``_``), ignoring case.
6. ``original-op``: the target's reader recorded the original framework op the tensor holds
   (``meta["original_op"] = [name, output_index]``, e.g. an Ascend dump header's ``original_op``).
7. ``truncated``: the target cuts names at a known length and the cut name is the prefix of
   exactly one reference name.

Nothing is ever paired by substring or by position. A reference tensor claimed twice keeps its
first partner; the other target tensor is reported unmatched with the reason.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from netdiff.errors import AlignmentError
from netdiff.types import IDENTITY, Dump, Match, Tensor, Transform

_ESCAPED = re.compile(r"[/.\\: \-]")
_PERM_NAMES = {(0, 3, 1, 2): "NHWC->NCHW", (0, 2, 3, 1): "NCHW->NHWC", (2, 0, 1): "HWC->CHW", (1, 2, 0): "CHW->HWC"}


def normalize_name(name: str) -> str:
    """Apply the escaping real toolchains apply to names: ``/ . \\ : space -`` -> ``_``, lower case.

    Leading and trailing underscores are dropped (``/conv1/Conv`` and ``conv1_Conv`` agree).
    """
    return _ESCAPED.sub("_", name).strip("_").lower()


@dataclass
class Alignment:
    """The result of :func:`align_dumps`.

    Attributes:
        matches: One Match per reference tensor (in reference order), then one per unmatched
            target tensor.
        not_observable: Reference names whose value the target cannot expose (in-place chain
            members, fused-away ops) -> reason.
        target_only: Target tensors that are device-internal and never compared.
    """

    matches: list[Match]
    not_observable: dict[str, str] = field(default_factory=dict)
    target_only: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[Match]:
        """Matches that pair a reference with a target tensor."""
        return [m for m in self.matches if m.reference is not None and m.target is not None]


def load_mapping(path: str | Path) -> dict[str, str]:
    """Read a JSON mapping file ``{target_name: reference_name}``.

    Raises:
        AlignmentError: The file is not a JSON object of strings.
    """
    from netdiff._input_files import load_json

    path = Path(path)
    data = load_json(path, "mapping file", AlignmentError)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise AlignmentError(f"{path}: a mapping file must be a JSON object {{\"target_name\": \"reference_name\"}}")
    return data


class _ReferenceIndex:
    """Name lookups over the reference dump."""

    def __init__(self, reference: Dump) -> None:
        self.dump = reference
        self.normalized: dict[str, list[str]] = {}
        self.nodes: dict[tuple[str, int], str] = {}
        for t in reference:
            self.normalized.setdefault(normalize_name(t.name), []).append(t.name)
            node = t.meta.get("node") if t.meta else None
            if isinstance(node, str):
                self.nodes.setdefault((node, _index(t.meta.get("output_index", 0))), t.name)
                self.normalized.setdefault(normalize_name(node), [])
        blobs = reference.meta.get("blobs") if isinstance(reference.meta.get("blobs"), dict) else {}
        self.blobs: dict[str, list[str]] = {b: list(w) for b, w in blobs.items()
                                            if w and isinstance(w, list) and all(isinstance(x, str) for x in w)}

    def resolve(self, name: str, output_index: int = 0) -> tuple[str | None, str]:
        """Reference tensor for a tensor or node name, exact then normalised.

        For ``output_index`` > 0 the name must be a node (or ``name:k``): the bare tensor name
        would be output 0.
        """
        tensor_name = f"{name}:{output_index}" if output_index > 0 else name
        if tensor_name in self.dump:  # a tensor name wins over a node of the same name (tf2onnx reuses them)
            return tensor_name, "exact"
        if (name, output_index) in self.nodes:
            return self.nodes[(name, output_index)], "exact"
        key = normalize_name(name)
        nodes = [t for (n, k), t in self.nodes.items() if k == output_index and normalize_name(n) == key]
        if output_index > 0:
            return (nodes[0], "normalized") if len(nodes) == 1 else (None, "")
        hits = self.normalized.get(key, [])
        if len(hits) == 1:
            return hits[0], "normalized"
        if len(nodes) == 1:
            return nodes[0], "normalized"
        if len(hits) > 1:
            return None, f"normalized name matches several reference tensors: {', '.join(sorted(hits)[:5])}"
        return None, ""


def align_dumps(reference: Dump, target: Dump, mapping: Mapping[str, str] | None = None, *,
                naming: str | None = None) -> Alignment:
    """Pair the tensors of ``target`` with those of ``reference``.

    Args:
        reference: The reference dump.
        target: The target dump.
        mapping: Optional explicit ``{target_name: reference_name}`` pairs.
        naming: "blob" or "layer" (netdiff.naming); None: as the target's reader says.

    Raises:
        AlignmentError: The mapping names a tensor that does not exist.
    """
    mapping = dict(mapping or {})
    _check_mapping(mapping, reference, target)
    index = _ReferenceIndex(reference)
    skip = set(target.target_only)
    by_blob = (naming or target.meta.get("tensor_names")) == "blob" and bool(index.blobs)
    limit = target.meta.get("name_limit")
    claimed: dict[str, Match] = {}
    unmatched_targets: list[Match] = []
    not_observable: dict[str, str] = {}
    for tensor in target:
        if tensor.name in skip:
            continue
        ref_name, method, reason = _pair(tensor, index, mapping, by_blob, limit, not_observable)
        if ref_name is None:
            unmatched_targets.append(Match(None, tensor.name, "unmatched", reason=reason or "no reference tensor of that name"))
            continue
        if ref_name in claimed:
            unmatched_targets.append(Match(None, tensor.name, "unmatched",
                                           reason=f"reference {ref_name!r} is already paired with {claimed[ref_name].target!r}"))
            continue
        for fused in tensor.origin_names[:-1]:
            fused_name, _ = index.resolve(fused)
            if fused_name and fused_name != ref_name:
                not_observable.setdefault(fused_name, f"fused into target tensor {tensor.name!r}")
        transform, alternatives, why = reconcile_shapes(reference[ref_name], tensor)
        claimed[ref_name] = Match(ref_name, tensor.name, method, transform,
                                  reason=why, alternatives=alternatives)
    fused = target.meta.get("not_observable")
    if isinstance(fused, dict):  # reference tensors a converted target model fused away (netdiff.converted)
        for name, why in fused.items():
            if name in reference and name not in claimed:
                not_observable.setdefault(name, str(why))
    matches = []
    for ref in reference:
        if ref.name in claimed:
            matches.append(claimed[ref.name])
        else:
            matches.append(Match(ref.name, None, "unmatched", reason=not_observable.get(ref.name, "no target tensor")))
    return Alignment(matches + unmatched_targets, not_observable, [n for n in target.names if n in skip])


def _check_mapping(mapping: dict[str, str], reference: Dump, target: Dump) -> None:
    bad_t = [t for t in mapping if t not in target]
    bad_r = [r for r in mapping.values() if r not in reference]
    if bad_t:
        raise AlignmentError(f"mapping names target tensor(s) not in the target: {_names(bad_t)}")
    if bad_r:
        raise AlignmentError(f"mapping names reference tensor(s) not in the reference: {_names(bad_r)}")


def _names(names: list[str], count: int = 5, width: int = 80) -> str:
    """A few names for a one-line message (each cut to ``width`` characters, control characters escaped)."""
    shown = [repr(n[:width])[1:-1] + ("…" if len(n) > width else "") for n in names[:count]]
    return ", ".join(shown) + (f" (+{len(names) - count} more)" if len(names) > count else "")


def _pair(tensor: Tensor, index: _ReferenceIndex, mapping: dict[str, str], by_blob: bool,
          limit: object, not_observable: dict[str, str]) -> tuple[str | None, str, str]:
    """Return (reference name, method, reason) for one target tensor."""
    if tensor.name in mapping:
        return mapping[tensor.name], "map", "user mapping file"
    if tensor.origin_names:
        out_index = _index(tensor.meta.get("origin_output_index", 0)) if tensor.meta else 0
        name, how = index.resolve(tensor.origin_names[-1], out_index)
        if name is not None:
            placed = tensor.meta.get("placed_by") if tensor.meta else None
            if placed == "content":  # a converted model's tensor placed by its value (netdiff.converted)
                return name, "content", str(tensor.meta.get("note") or f"holds {tensor.origin_names[-1]!r} (content check)")
            if placed:
                return name, "fusion-map", f"{tensor.name!r} holds {tensor.origin_names[-1]!r} (placed by {placed})"
            return name, "fusion-map", f"fusion map: holds {tensor.origin_names[-1]!r}"
        return None, "unmatched", f"fusion map names {tensor.origin_names[-1]!r}, which the reference does not have"
    if by_blob:
        writers = index.blobs.get(tensor.name) or _unique(index.blobs, normalize_name(tensor.name), normalize_name)
        if writers:
            for inner in writers[:-1]:
                not_observable[inner] = f"in-place on blob {tensor.name!r}: the target keeps only {writers[-1]!r}"
            return writers[-1], "blob", f"blob {tensor.name!r}, last written by {writers[-1]!r}"
    name, how = index.resolve(tensor.name)
    if name is None and ":" in tensor.name:
        node, _, k = tensor.name.rpartition(":")
        if k.isdigit():
            name, how = index.resolve(node, int(k))
    if name is not None:
        return name, how, f"{how} name"
    original = tensor.meta.get("original_op") if tensor.meta else None
    if isinstance(original, (list, tuple)) and len(original) == 2 and isinstance(original[0], str) and original[0]:
        name, _ = index.resolve(original[0], _index(original[1]))
        if name is not None:
            return name, "original-op", f"the dump header names its original op {original[0]!r}"
    if isinstance(limit, int) and len(tensor.name) == limit:
        candidates = [n for n in index.dump.names if n.startswith(tensor.name) or
                      normalize_name(n).startswith(normalize_name(tensor.name))]
        if by_blob:
            candidates = [w[-1] for b, w in index.blobs.items() if b.startswith(tensor.name)]
        if len(candidates) == 1:
            return candidates[0], "truncated", f"name cut at {limit} characters"
    return None, "unmatched", how


def _index(value: object) -> int:
    """An output index from dump metadata (anything but a small non-negative int counts as 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31 else 0


def _unique(blobs: dict[str, list[str]], key: str, norm) -> list[str] | None:
    hits = [w for b, w in blobs.items() if norm(b) == key]
    return hits[0] if len(hits) == 1 else None


def reconcile_shapes(ref: Tensor, tgt: Tensor) -> tuple[Transform | None, tuple[Transform, ...], str]:
    """Find how to view the target tensor in the reference's shape.

    Returns:
        (transform or None when the shapes cannot be reconciled, equally plausible alternatives,
        a short reason).
    """
    for side in (ref, tgt):
        if side.error:
            return None, (), side.error
    rs, ts = tuple(ref.shape), tuple(tgt.shape)
    layout_perm = _layout_permutation(ref, tgt)
    if rs == ts:
        if layout_perm is not None and _permute(ts, layout_perm) == rs:
            return _perm_transform(layout_perm), (), f"target stored {tgt.layout}"
        alternatives = ()
        if len(rs) == 4 and rs[1] == rs[2] == rs[3] and rs[1] > 1 and tgt.layout is None:
            alternatives = (_perm_transform((0, 3, 1, 2)),)
        return IDENTITY, alternatives, "same shape"
    if math.prod(rs) != math.prod(ts):
        return None, (), f"shape {list(ts)} cannot be reshaped to {list(rs)}"
    if layout_perm is not None and _permute(ts, layout_perm) == rs:
        return _perm_transform(layout_perm), (), f"target stored {tgt.layout}"
    if _squeezed(rs) == _squeezed(ts):
        return Transform(reshape=True, description=f"reshape {list(ts)}->{list(rs)}"), (), "same values, dims of size 1 differ"
    perms = [p for p in itertools.permutations(range(len(ts))) if _permute(ts, p) == rs] if len(ts) <= 6 else []
    if perms:
        ranked = sorted(perms, key=lambda p: (p not in _PERM_NAMES, p))
        transforms = tuple(_perm_transform(p) for p in ranked)
        return transforms[0], transforms[1:], "axes permuted"
    squeezed_perms = _squeezed_permutation(rs, ts)
    if squeezed_perms is not None:
        return squeezed_perms, (), "axes permuted (dims of size 1 differ)"
    return Transform(reshape=True, description=f"reshape {list(ts)}->{list(rs)}"), (), "same element count, flattened"


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _squeezed_permutation(rs: tuple[int, ...], ts: tuple[int, ...]) -> Transform | None:
    """NHWC vs NCHW when one side also has extra or missing unit dims (e.g. HWC vs 1CHW)."""
    r, t = _squeezed(rs), _squeezed(ts)
    if len(t) != len(r) or len(t) > 6:
        return None
    for p in itertools.permutations(range(len(t))):
        if _permute(t, p) == r and p != tuple(range(len(t))):
            return Transform(permutation=p, squeeze=True, reshape=True, description=f"squeeze, transpose{p}")
    return None


def _layout_permutation(ref: Tensor, tgt: Tensor) -> tuple[int, ...] | None:
    if tgt.layout == "NHWC" and ref.layout in (None, "NCHW") and len(tgt.shape) == 4:
        return (0, 3, 1, 2)
    if tgt.layout == "NCHW" and ref.layout == "NHWC" and len(tgt.shape) == 4:
        return (0, 2, 3, 1)
    return None


def _permute(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[i] for i in perm)


def _perm_transform(perm: tuple[int, ...]) -> Transform:
    return Transform(permutation=tuple(perm), description=_PERM_NAMES.get(tuple(perm), f"transpose{tuple(perm)}"))
