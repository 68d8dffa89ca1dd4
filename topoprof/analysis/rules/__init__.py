"""The rule catalogue of ``reference/rules.md``: one small pure function per rule, one registry.

:data:`REGISTRY` maps each stable rule id to its :class:`RuleSpec` (function, where it works,
origin), in the catalogue's order; :func:`run_rules` applies them to a :class:`RuleContext`.
"""

from __future__ import annotations

from ..findings import Finding, rank_findings
from . import compute, distributed, host, memory  # noqa: F401  (importing registers the rules)
from .base import REGISTRY, Rule, RuleContext, RuleSpec, rule

__all__ = ["REGISTRY", "RULE_IDS", "Rule", "RuleContext", "RuleSpec", "rule", "run_rules"]

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
    findings: list[Finding] = []
    for rule_id in RULE_IDS:
        if rule_id in selected:
            findings.extend(REGISTRY[rule_id].func(ctx))
    return rank_findings(findings)
