"""Where a hypothesis rule re-runs an op: on the target's own inputs, or from the nearest dumped tensors.

A hypothesis rule ("the target resized with another convention") re-runs one reference op under
each variant and compares with the target. A :class:`Site` is one such op, ready to re-run:

- *direct*: the op produces an origin; its inputs are the target's dumped tensors, or, when the
  target did not dump them, recomputed by the reference subgraph from the nearest tensors it did
  dump (:mod:`netdiff.segment`);
- *inside a segment*: the origin's own op is not of the rule's types, but the reference subgraph
  between the nearest dumped tensors and the origin holds such an op (a Resize whose output was not
  dumped, followed by a Conv that was): the variant's output is carried through the rest of the
  segment (:attr:`Site.forward`) and compared with the target's value at the origin.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from netdiff.diagnosis.base import Context
from netdiff.types import Finding, LayerResult


@dataclass
class Site:
    """One op a hypothesis rule re-runs, with the data to re-run it on.

    Attributes:
        origin: The report layer the comparison is made at (an origin).
        name: The op's output tensor (the origin's own tensor for a direct site).
        runner: The op as a :class:`netdiff.isolated.NodeRunner` (its initializers, opsets).
        feeds: The op's inputs: the target's own, or recomputed from ``started_from``.
        target_out: The target's value of ``origin``, in the reference's shape.
        op_shape: The shape of the op's output in the reference.
        started_from: Dumped tensors the inputs were recomputed from (empty: the target's own inputs).
        rest: Runs the reference ops after the op up to ``origin`` (None for a direct site).
        between: Op types of those ops.
    """

    origin: LayerResult
    name: str
    runner: Any
    feeds: dict[str, np.ndarray]
    target_out: np.ndarray
    op_shape: tuple[int, ...]
    started_from: list[str] = field(default_factory=list)
    rest: Callable[[np.ndarray], np.ndarray | None] | None = None
    between: list[str] = field(default_factory=list)

    def forward(self, out: np.ndarray | None) -> np.ndarray | None:
        """Carry an op output through the rest of the segment to ``origin`` (identity for a direct site);
        None when onnxruntime refuses."""
        if out is None or self.rest is None:
            return out
        return self.rest(out)

    @property
    def node(self) -> Any:
        """The op's reference node."""
        return self.runner.node

    @property
    def direct(self) -> bool:
        """True when the op produces the origin itself (nothing between its output and the comparison)."""
        return self.name == self.origin.name


def sites(context: Context, op_types: Collection[str], inside: bool = True) -> Iterator[Site]:
    """A :class:`Site` for each unexplained origin whose op is one of ``op_types`` (direct), and with
    ``inside``, for each such op in the reference subgraph between the nearest dumped tensors and an
    unexplained origin."""
    if context.model is None:
        return
    from netdiff.isolated import NodeIndex, node_feeds
    from netdiff.segment import build_segment

    from netdiff.diagnosis._common import candidates, introduced_here

    index = NodeIndex(context.model)
    by_name = {x.name: x for x in context.report.layers}
    for layer in candidates(context):
        node = index.producer.get(layer.name)
        if layer.name in context.explained or not introduced_here(context, layer) or node is None:
            continue
        if node.op_type in op_types:
            prepared = node_feeds(index, layer, by_name, context.reference, context.target)
            if prepared is not None:
                runner, feeds, used, target_out = prepared
                started = sorted({t for names in (used.get("recomputed") or {}).values() for t in names})
                yield Site(layer, layer.name, runner, feeds, target_out, tuple(target_out.shape), started)
            continue
        if not inside:
            continue
        segment = build_segment(index, layer.name, by_name, context.reference, context.target)
        if segment is None:
            continue
        target_out = _aligned(layer, context)
        positions = [i for i, n in enumerate(segment.nodes[:-1]) if n.op_type in op_types and n.output[0]]
        if target_out is None or not positions:
            continue
        values = segment.run(outputs=list(dict.fromkeys(o for n in segment.nodes for o in n.output if o)))
        if values is None:
            continue
        values = {**segment.frontier, **values}
        for position in positions:
            site = _inner_site(context, index, layer, segment, position, values, target_out)
            if site is not None:
                yield site


def _aligned(layer: LayerResult, context: Context) -> np.ndarray | None:
    from netdiff.isolated import aligned_target

    return aligned_target(layer, context.target, context.reference)


def _inner_site(context: Context, index: Any, layer: LayerResult, segment: Any, position: int,
                values: dict[str, np.ndarray], target_out: np.ndarray) -> Site | None:
    node = segment.nodes[position]
    out_name = node.output[0]
    runner = index.runner(out_name)
    if runner is None or out_name not in context.reference or any(n not in values for n in runner.inputs):
        return None
    after = segment.after(position)
    extra_outputs = {o for o in node.output[1:] if o}
    if any(i in extra_outputs for n in after for i in n.input):
        return None  # a second output of the op feeds the rest: the variant would change it too
    later = {id(n) for n in after}
    outside = {o for n in segment.nodes if id(n) not in later for o in n.output if o}
    carried = {k: v for k, v in values.items() if k in outside and k != out_name}

    def forward(out: np.ndarray) -> np.ndarray | None:
        result = segment.run(outputs=[layer.name], feeds={**carried, out_name: out}, nodes=after)
        return None if result is None else result[layer.name]

    feeds = {n: values[n] for n in runner.inputs}
    between = [n.op_type for n in after]
    return Site(layer, out_name, runner, feeds, np.asarray(target_out), tuple(context.reference[out_name].shape),
                segment.started_from, forward, between)


def explain_sites(context: Context, op_types: Collection[str], explain: Callable[[Context, Site], Finding | None],
                  inside: bool = True) -> Iterator[Finding]:
    """For each :func:`sites` site, ``explain(context, site)``; a finding it returns claims the origin
    and is yielded, saying where the re-run started when the target had not dumped the op's inputs."""
    for site in sites(context, op_types, inside):
        if site.origin.name in context.explained:
            continue
        found = explain(context, site)
        if found is None:
            continue
        context.claim(site.origin.name)
        yield _located(found, site)


def _located(found: Finding, site: Site) -> Finding:
    """The finding at the origin, with where its re-run started when that was not the op's own inputs."""
    if not site.started_from and site.direct:
        return found
    evidence = dict(found.evidence)
    start = ", ".join(site.started_from)
    evidence["started_from"] = list(site.started_from)
    words = []
    if site.started_from:
        words.append(f"re-run from {start}, the nearest tensor{'s' if len(site.started_from) > 1 else ''} the target "
                     f"dumped before it")
    if not site.direct:
        evidence.update(op_tensor=site.name, compared_at=site.origin.name, ops_after=site.between)
        words.append(f"{site.name} was not dumped: compared at {site.origin.name} after "
                     f"{len(site.between)} more reference op{'s' if len(site.between) != 1 else ''} "
                     f"({', '.join(site.between)})")
    message = f"{found.message.rstrip('.')} ({'; '.join(words)})."
    return replace(found, layer=site.origin.name, message=message, evidence=evidence)
