"""Vectorised interval queries used to attribute trace events.

All functions take intervals sorted by start (ties: longer first) and work in whole numpy passes;
the loops run O(log n) or O(nesting depth) times, never once per event.

The *parent* of interval ``i`` is the nearest earlier interval (in start order) that ends no
earlier than ``i``: for properly nested intervals that is the innermost enclosing one, and it
stays well defined when intervals overlap partially (ranges opened and closed inside autograd
hooks do). Following parents from the last interval that starts at or before a point ``p``
visits every interval that could contain ``p`` from the latest start backwards, so the first one
that contains ``p`` is the innermost (latest-starting) container of ``p``.

>>> import numpy as np
>>> start = np.array([0.0, 1.0, 2.0, 6.0]); end = np.array([10.0, 5.0, 3.0, 7.0])
>>> enclosing_parent(start, end).tolist()
[-1, 0, 1, 0]
>>> innermost_containing(start, end, enclosing_parent(start, end), np.array([2.5, 5.5, 11.0])).tolist()
[2, 0, -1]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "enclosing_parent",
    "innermost_containing",
    "nearest_marked_ancestor",
    "nest_intervals",
    "sort_intervals",
    "union_length_in_windows",
]


def sort_intervals(start: np.ndarray, end: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Order (indices) that sorts by ``keys`` (most significant first), then by start
    ascending, then by end descending (so a parent precedes a child starting at the same time),
    then by original index."""
    n = start.size
    return np.lexsort((np.arange(n), -end, start, *reversed(keys)))


def enclosing_parent(start: np.ndarray, end: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
    """Index of each interval's parent (see the module docstring), or -1.

    Args:
        start, end: Interval bounds sorted by (group, start, -end).
        group: Optional group ids (e.g. threads); a parent is never taken from another group.

    Returns:
        int64 array of parent indices (-1: none).
    """
    n = start.size
    cur = np.arange(n, dtype=np.int64) - 1  # current guess for each parent, never below the answer
    if group is not None and n:
        first = np.ones(n, dtype=bool)
        first[1:] = group[1:] != group[:-1]
        cur[first] = -1
    parent = np.full(n, -1, dtype=np.int64)
    active = np.flatnonzero(cur >= 0)
    g = cur[active]
    while active.size:
        ok = end[g] >= end[active]
        if group is not None:
            ok |= group[g] != group[active]  # left the group: no parent
        done = active[ok]
        parent[done] = np.where(group[g[ok]] == group[done], g[ok], -1) if group is not None else g[ok]
        cur[done] = parent[done]
        active, g = active[~ok], g[~ok]
        # g ends before the interval, so is no container: every interval between g's parent and
        # g ends before g does, so jump straight to g's best guess (pointer doubling).
        g = cur[g]
        keep = g >= 0
        active, g = active[keep], g[keep]
        cur[active] = g
    return parent


def innermost_containing(start: np.ndarray, end: np.ndarray, parent: np.ndarray,
                         points: np.ndarray) -> np.ndarray:
    """For each point, the latest-starting interval with ``start <= p <= end``, or -1.

    Args:
        start, end: Intervals sorted by start (one group only).
        parent: :func:`enclosing_parent` of the intervals.
        points: Query points (any order).
    """
    if start.size == 0:
        return np.full(points.size, -1, dtype=np.int64)
    k = np.searchsorted(start, points, side="right").astype(np.int64) - 1
    todo = np.flatnonzero(k >= 0)
    todo = todo[end[k[todo]] < points[todo]]
    while todo.size:
        k[todo] = parent[k[todo]]
        todo = todo[k[todo] >= 0]
        todo = todo[end[k[todo]] < points[todo]]
    return k


def nest_intervals(start: np.ndarray, end: np.ndarray, max_rounds: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Make partially overlapping intervals nest: of two intervals where one starts inside the
    other and ends after it, the shorter becomes a child of the longer, whose bound is
    stretched to cover it.

    Ranges opened in autograd hooks overlap partially when a parent and a child module share
    an output tensor: both ranges open in hooks on the same autograd node, the child's first.
    Stretching the parent's start back to the child's makes the child innermost again.

    Args:
        start, end: Interval bounds (any order; not modified).
        max_rounds: Repairs can cascade up a hierarchy; stop after this many rounds.

    Returns:
        New ``(start, end)`` arrays in the input order.
    """
    start, end = start.astype(np.float64), end.astype(np.float64)
    for _ in range(max_rounds):
        order = sort_intervals(start, end)
        s, e = start[order], end[order]
        parent = enclosing_parent(s, e)
        # q: the latest-starting earlier interval that contains each interval's start
        q = np.arange(s.size, dtype=np.int64) - 1
        todo = np.flatnonzero(q >= 0)
        todo = todo[e[q[todo]] < s[todo]]
        while todo.size:
            q[todo] = parent[q[todo]]
            todo = todo[q[todo] >= 0]
            todo = todo[e[q[todo]] < s[todo]]
        i = np.flatnonzero((q >= 0) & (e[np.maximum(q, 0)] < e))  # q contains i's start, not its end
        if not i.size:
            break
        qi = q[i]
        longer_i = (e[i] - s[i]) > (e[qi] - s[qi])
        np.minimum.at(s, i[longer_i], s[qi[longer_i]])  # i becomes q's parent
        np.maximum.at(e, qi[~longer_i], e[i[~longer_i]])  # q becomes i's parent
        start[order], end[order] = s, e
    return start, end


def nearest_marked_ancestor(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """For each node of a forest given by ``parent`` (-1: root), the nearest node on its path
    to the root (itself included) with ``marked`` set, or -1. Pointer jumping: O(log depth)
    passes."""
    idx = np.arange(parent.size, dtype=np.int64)
    # up[i]: i itself if marked, else a node above i with no marked node in between (or -1)
    up = np.where(marked, idx, parent)
    while True:
        live = np.flatnonzero(up >= 0)
        jump = live[~marked[up[live]]]
        if not jump.size:
            return up
        up[jump] = up[up[jump]]


def union_length_in_windows(start: np.ndarray, end: np.ndarray, w_start: np.ndarray,
                            w_end: np.ndarray) -> np.ndarray:
    """Length of the union of intervals ``[start, end]`` inside each window (same unit).

    Overlapping intervals (kernels on concurrent streams) count once.
    """
    out = np.zeros(w_start.size, dtype=np.float64)
    if start.size == 0 or w_start.size == 0:
        return out
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    seg_s = s[new]
    seg_e = np.maximum.reduceat(e, np.flatnonzero(new))
    # cumulative covered length up to time t: full segments before t plus the part of the one
    # containing t
    cum = np.concatenate(([0.0], np.cumsum(seg_e - seg_s)))

    def covered(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(seg_s, t, side="right")  # segments starting at or before t
        last = np.maximum(i - 1, 0)
        inside = np.minimum(seg_e[last], t) - seg_s[last]
        return np.where(i > 0, cum[last] + inside, 0.0)

    return covered(w_end) - covered(w_start)
