"""A small layered (Sugiyama-style) layout for the HTML report's graph view.

Columns are longest-path depths from the graph inputs; inside a column, nodes sit as close as
possible to the mean height of their inputs, so chains stay on one row and branches fan out.
Deterministic: the same graph always gets the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NODE_W = 118
NODE_H = 34
GAP_X = 34
GAP_Y = 14
MARGIN = 12
#: Room above the first row for skip connections drawn as arcs.
MARGIN_TOP = 44


@dataclass(frozen=True)
class Layout:
    """Node positions (top-left corners, pixels) and the drawing size."""

    x: list[int]
    y: list[int]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def layered_layout(preds: Sequence[Sequence[int]]) -> Layout:
    """Place nodes given, for each node, the indices of the nodes feeding it.

    Args:
        preds: ``preds[i]`` lists the inputs of node ``i`` (indices into ``preds``); unknown
            or self references are ignored and cycles are broken at the back edge.
    """
    n = len(preds)
    clean = [sorted({p for p in ps if 0 <= p < n and p != i}) for i, ps in enumerate(preds)]
    rank = _ranks(clean)
    columns: dict[int, list[int]] = {}
    for i in range(n):
        columns.setdefault(rank[i], []).append(i)
    y_slot = [0.0] * n
    step = NODE_H + GAP_Y
    for r in sorted(columns):
        members = columns[r]
        desired = {}
        for i in members:
            ins = [y_slot[p] for p in clean[i] if rank[p] < r]
            desired[i] = sum(ins) / len(ins) if ins else 0.0
        members.sort(key=lambda i: (desired[i], i))
        floor = 0.0
        for i in members:
            y_slot[i] = max(round(desired[i] / step) * step, floor)
            floor = y_slot[i] + step
    xs = [MARGIN + rank[i] * (NODE_W + GAP_X) for i in range(n)]
    ys = [MARGIN_TOP + int(y_slot[i]) for i in range(n)]
    width = (max(xs) + NODE_W + MARGIN) if n else 0
    height = (max(ys) + NODE_H + MARGIN) if n else 0
    return Layout(xs, ys, width, height)


def _ranks(preds: list[list[int]]) -> list[int]:
    """Longest-path depth of each node (iterative DFS; a back edge of a cycle is ignored)."""
    n = len(preds)
    rank = [-1] * n
    state = [0] * n  # 0 new, 1 on stack, 2 done
    for start in range(n):
        if state[start]:
            continue
        stack = [(start, 0)]
        state[start] = 1
        while stack:
            node, k = stack[-1]
            if k < len(preds[node]):
                stack[-1] = (node, k + 1)
                p = preds[node][k]
                if state[p] == 0:
                    state[p] = 1
                    stack.append((p, 0))
                continue
            stack.pop()
            state[node] = 2
            depths = [rank[p] for p in preds[node] if state[p] == 2 and rank[p] >= 0]
            rank[node] = 1 + max(depths) if depths else 0
    return rank
