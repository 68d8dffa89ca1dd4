"""Findings: what the rules report, as plain data.

A :class:`Finding` names a bottleneck (a stable ``id`` from ``reference/rules.md``), the
numbers that show it (:class:`Evidence`, each with a unit), what to do about it
(:class:`Recommendation`: text and a code snippet) and how much of the step that could save
(:class:`Saving`: an estimated fraction with the way it was estimated, or ``None`` where the
catalogue gives no estimate). Findings hold no markup: renderers word and style them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

__all__ = [
    "SEVERITIES",
    "EvidenceValue",
    "Evidence",
    "Recommendation",
    "Saving",
    "Finding",
    "severity_rank",
    "rank_findings",
]

#: Severities from most to least urgent.
SEVERITIES: tuple[str, ...] = ("high", "medium", "low", "info")

EvidenceValue = Union[float, int, str, bool, None]
"""A number (the usual case), or a name (a call site, a GPU set written as text)."""


@dataclass(frozen=True)
class Evidence:
    """One named number with its unit.

    Attributes:
        name: what the number is (``"data phase"``, ``"layer1.0.conv1 in_channels"``).
        value: the number (or a name, for call sites and sets).
        unit: ``"us"``, ``"bytes"``, ``"frac"`` (0..1), ``"FLOP"``, ``"FLOP/s"``,
            ``"FLOP/byte"``, ``"bytes/s"``, ``"count"``, ``"elements"``, ``"params"``, or ``""``
            for names.
    """

    name: str
    value: EvidenceValue
    unit: str = ""


@dataclass(frozen=True)
class Recommendation:
    """What to change: a sentence and, where one helps, a code snippet (plain Python text)."""

    text: str
    code: str = ""


@dataclass(frozen=True)
class Saving:
    """The estimated share of the step a fix would save.

    Attributes:
        frac: fraction of the step time, 0..1; ``None`` where no estimate is made (the rule
            catalogue gives none, or the data needed is missing).
        how: how it was estimated (which step: measured on the profiled machine or projected
            on the target; which model), or why there is no estimate.
    """

    frac: float | None
    how: str

    def __post_init__(self) -> None:
        if self.frac is not None:
            if math.isnan(self.frac):
                object.__setattr__(self, "frac", None)
            else:
                object.__setattr__(self, "frac", min(max(float(self.frac), 0.0), 1.0))


@dataclass(frozen=True)
class Finding:
    """One bottleneck found in a run.

    Attributes:
        id: stable rule id from ``reference/rules.md`` (``"input-bound"``).
        severity: ``"high"``, ``"medium"``, ``"low"`` or ``"info"``.
        title: one plain sentence naming the problem.
        evidence: the numbers behind it, with units.
        recommendation: what to do.
        saving: the estimated saving.
        layers: layer graph node ids (qualified module names) the finding is about.
    """

    id: str
    severity: str
    title: str
    evidence: tuple[Evidence, ...]
    recommendation: Recommendation
    saving: Saving
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")

    def evidence_value(self, name: str) -> EvidenceValue:
        """The value of the evidence called ``name``.

        Raises:
            KeyError: no such evidence.
        """
        for e in self.evidence:
            if e.name == name:
                return e.value
        raise KeyError(f"finding {self.id!r} has no evidence {name!r}")


def severity_rank(severity: str) -> int:
    """0 for ``"high"`` ... 3 for ``"info"``."""
    return SEVERITIES.index(severity)


def rank_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """Findings ordered by estimated saving (largest first); those without an estimate follow,
    by severity; ties keep rule order (stable sort)."""
    return tuple(sorted(
        findings,
        key=lambda f: (
            -(f.saving.frac if f.saving.frac is not None else -1.0),
            severity_rank(f.severity),
        ),
    ))
