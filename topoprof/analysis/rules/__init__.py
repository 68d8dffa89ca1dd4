"""The rule catalogue of ``reference/rules.md``: one small pure function per rule, one registry.

:data:`REGISTRY` maps each stable rule id to its :class:`RuleSpec` (function, where it works,
origin), in the catalogue's order; :func:`run_rules` applies them to a :class:`RuleContext`.
"""

from __future__ import annotations

from ..findings import Finding, rank_findings
from . import compute, distributed, host, memory  # noqa: F401  (importing registers the rules)
from .base import REGISTRY, Rule, RuleContext, RuleSpec, rule

__all__ = ["REGISTRY", "RULE_IDS", "Rule", "RuleContext", "RuleSpec", "rule", "rules_without_graph", "run_rules"]

#: Every rule id, in the catalogue's order (rules.md: host, compute, memory, distributed).
RULE_IDS: tuple[str, ...] = (
    "input-bound", "host-sync", "step-variance", "launch-bound", "gpu-idle", "pageable-memcpy",
    "hot-layers", "fp32-matmul", "tensor-core-alignment", "memory-bound-layers", "channels-last",
    "cudnn-benchmark", "optimizer-unfused", "compile-candidate",
    "memory-at-limit", "model-exceeds-gpu", "memory-underused",
    "dataparallel", "ddp-backend", "comm-exposed", "straggler-rank", "nvlink-placement", "scaling",
)
if set(RULE_IDS) != set(REGISTRY):  # pragma: no cover - a rule added without its place in the order
    raise RuntimeError(f"rule order and registry differ: {sorted(set(RULE_IDS) ^ set(REGISTRY))}")


#: Projection rules that need no layer FLOPs or shapes (the topology and parameter bytes do).
_GRAPH_FREE_PROJECTION_RULES = frozenset({"nvlink-placement"})


def rules_without_graph(ctx: RuleContext) -> list[str]:
    """Rules that cannot be judged because the run captured no layer graph
    (``capture_graph=False``: no FLOPs, shapes or bytes, so the projection has no compute)."""
    rank = ctx.rank
    if not rank.modules or rank.edges or any(m.in_shapes or m.flops_fwd for m in rank.modules):
        return []
    measured_comm = any(s.comm_us is not None for s in rank.steps)
    return [
        r.id for r in REGISTRY.values()
        if "proj" in r.where and r.id not in _GRAPH_FREE_PROJECTION_RULES
        and not (r.id == "comm-exposed" and measured_comm)
    ]


def run_rules(ctx: RuleContext) -> tuple[Finding, ...]:
    """Apply the enabled rules (``options.rules`` / ``options.disabled_rules``) to ``ctx``;
    findings ranked by estimated saving.

    Raises:
        ValueError: an unknown rule id in the options.
    """
    opts = ctx.options
    unknown = [r for r in (*(opts.rules or ()), *opts.disabled_rules) if r not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown rule id(s) {unknown}; known: {', '.join(REGISTRY)}")
    selected = [r for r in (opts.rules or RULE_IDS) if r not in opts.disabled_rules]
    skipped = set(rules_without_graph(ctx))
    findings: list[Finding] = []
    for rule_id in RULE_IDS:
        if rule_id in selected and rule_id not in skipped:
            findings.extend(REGISTRY[rule_id].func(ctx))
    return rank_findings(findings)
