"""The critical path through the layer graph, weighted by measured time.

The layer graph (:meth:`topoprof.run.Run.graph`) links the modules that exchange tensors, from
the ``input`` node to the ``output`` node. Each node weighs its measured self time per step
(``self_fwd_us + self_bwd_us``, medians). The critical path is the heaviest chain from input to
output: the layers that bound the step if independent branches could run side by side.

The graph is not always acyclic: a module called in a loop (an RNN cell) feeds itself (a
self-loop), and a module called at two places (shared weights) can close a longer cycle. Self-loops
are dropped (their time is the node's own); larger cycles are condensed into one node whose weight
is the sum of its members, all of which are listed on the path.

>>> import networkx as nx
>>> g = nx.DiGraph([("input", "a"), ("a", "b"), ("a", "c"), ("b", "output"), ("c", "output")])
>>> nx.set_node_attributes(g, {"a": 1.0, "b": 5.0, "c": 2.0}, "self_us")
>>> critical_path(g, weight="self_us").nodes
('input', 'a', 'b', 'output')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

__all__ = ["CriticalPath", "critical_path", "node_self_us"]


@dataclass(frozen=True)
class CriticalPath:
    """The heaviest input-to-output chain of layers.

    Attributes:
        nodes: node ids along the path, from the input node to the output node (members of a
            condensed cycle in module order).
        time_us: the summed weight of the path's nodes.
        total_us: the summed weight of every node of the graph.
        share: ``time_us / total_us`` (0 when the graph has no time).
        cycles: groups of nodes that formed cycles and were condensed (self-loops excluded).
        weight: the node attribute used.
    """

    nodes: tuple[str, ...]
    time_us: float
    total_us: float
    share: float
    cycles: tuple[tuple[str, ...], ...]
    weight: str


def node_self_us(graph: nx.DiGraph, attr: str = "self_us") -> nx.DiGraph:
    """A copy of ``graph`` whose nodes carry ``attr`` = ``self_fwd_us + self_bwd_us`` (0 for
    the input/output nodes)."""
    g = graph.copy()
    for _, d in g.nodes(data=True):
        d[attr] = float(d.get("self_fwd_us", 0.0) or 0.0) + float(d.get("self_bwd_us", 0.0) or 0.0)
    return g


def _weight(data: Any, weight: str) -> float:
    value = data.get(weight, 0.0) if data is not None else 0.0
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def critical_path(graph: nx.DiGraph, weight: str = "self_us", source: str | None = None,
                  target: str | None = None) -> CriticalPath:
    """The heaviest path from ``source`` to ``target`` by node weight.

    Args:
        graph: a layer graph; nodes without ``weight`` weigh 0.
        weight: node attribute holding the time (us).
        source / target: end nodes; default the graph's ``input_node``/``output_node`` (or
            ``"input"``/``"output"``). Without a path between them the heaviest path of the
            graph is returned.

    Returns:
        The :class:`CriticalPath`.
    """
    source = source or graph.graph.get("input_node", "input")
    target = target or graph.graph.get("output_node", "output")
    order = {v: i for i, v in enumerate(graph.nodes)}
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes(data=True))
    g.add_edges_from((u, v) for u, v in graph.edges() if u != v)
    total = sum(_weight(d, weight) for _, d in graph.nodes(data=True))
    cond = nx.condensation(g)
    members = cond.graph["mapping"]  # node -> component id
    comp_nodes: dict[int, tuple[str, ...]] = {
        c: tuple(sorted(d["members"], key=lambda v: order[v])) for c, d in cond.nodes(data=True)
    }
    comp_weight = {c: sum(_weight(graph.nodes[v], weight) for v in vs) for c, vs in comp_nodes.items()}
    cycles = tuple(vs for vs in comp_nodes.values() if len(vs) > 1)

    # Longest path by node weight over the condensed DAG, restricted to source -> target when
    # both exist and connect.
    best: dict[int, float] = {}
    prev: dict[int, int | None] = {}
    start = members.get(source)
    end = members.get(target)
    connected = start is not None and end is not None and nx.has_path(cond, start, end)
    for c in nx.topological_sort(cond):
        if connected and c != start and not any(p in best for p in cond.predecessors(c)):
            continue
        if connected and c == start:
            best[c], prev[c] = comp_weight[c], None
            continue
        preds = [p for p in cond.predecessors(c) if p in best]
        if preds:
            p = max(preds, key=lambda q: (best[q], -q))
            best[c], prev[c] = best[p] + comp_weight[c], p
        elif not connected:
            best[c], prev[c] = comp_weight[c], None
    if not best:
        return CriticalPath((), 0.0, total, 0.0, cycles, weight)
    last = end if connected else max(best, key=lambda c: best[c])
    chain: list[int] = []
    cur: int | None = last
    while cur is not None:
        chain.append(cur)
        cur = prev[cur]
    nodes = tuple(v for c in reversed(chain) for v in comp_nodes[c])
    time = best[last]
    return CriticalPath(nodes, time, total, time / total if total > 0 else 0.0, cycles, weight)
