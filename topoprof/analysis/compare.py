"""Two runs side by side: step, phase, per-layer and per-finding deltas (DESIGN.md section 8).

:func:`compare` matches layers by qualified module name; layers present in one run only are
listed as such, never dropped. Findings are matched by rule id when both sides have an analysis
(``resolved``: in A only; ``new``: in B only; ``persisting``: in both). Every delta is
``b - a``: negative times mean B is faster. ``speedup`` is ``a / b`` of the median step, so 2.0
means B takes half the time.

>>> from topoprof.run import Manifest, RankData, Run, StepRecord
>>> def run(us):
...     steps = [StepRecord(0, us, {"forward": us})]
...     return Run(None, Manifest(name=f"r{us:g}"), {0: RankData(steps=steps)})
>>> round(compare(run(200.0), run(100.0), analyze=False).speedup, 2)
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..run import PHASES, Run, load
from .breakdown import LayerStat, StepBreakdown, layer_stats, step_breakdown

__all__ = [
    "Delta",
    "PhaseDelta",
    "LayerDelta",
    "FindingDelta",
    "RunSide",
    "Comparison",
    "LAYER_STATUSES",
    "FINDING_STATUSES",
    "compare",
]

#: Where a layer appears: in both runs, only in A or only in B.
LAYER_STATUSES: tuple[str, ...] = ("both", "only_a", "only_b")

#: What became of a finding from A to B.
FINDING_STATUSES: tuple[str, ...] = ("resolved", "new", "persisting")


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not den or math.isnan(num) or math.isnan(den):
        return None
    return num / den


@dataclass(frozen=True)
class Delta:
    """A number in run A and in run B (``None`` where a run lacks it)."""

    a: float | None
    b: float | None

    @property
    def diff(self) -> float | None:
        """``b - a``, or None when either side is missing."""
        if self.a is None or self.b is None:
            return None
        return self.b - self.a

    @property
    def ratio(self) -> float | None:
        """``b / a``, or None when missing or ``a`` is 0."""
        return _ratio(self.b, self.a)

    @property
    def rel(self) -> float | None:
        """``(b - a) / a``: the relative change, or None."""
        r = self.ratio
        return None if r is None else r - 1.0


@dataclass(frozen=True)
class PhaseDelta:
    """One phase of the step (median microseconds) in A and B."""

    phase: str
    us: Delta
    share: Delta


@dataclass(frozen=True)
class LayerDelta:
    """One module, matched by qualified name.

    Attributes:
        name: qualified module name (``""`` is the root).
        kind: module class in A (B's when only in B).
        kind_b: module class in B when it differs from A's (the same name, another module),
            else None.
        status: ``"both"``, ``"only_a"`` or ``"only_b"``.
        leaf: no child modules (in the run that has it; A's when in both).
        fwd_us / bwd_us: inclusive medians.
        self_us: self forward + self backward, medians.
        flops: forward + backward FLOPs per step.
        achieved_flop_per_s: FLOPs over inclusive time.
    """

    name: str
    kind: str
    kind_b: str | None
    status: str
    leaf: bool
    fwd_us: Delta
    bwd_us: Delta
    self_us: Delta
    flops: Delta
    achieved_flop_per_s: Delta


@dataclass(frozen=True)
class FindingDelta:
    """One rule id in A and in B.

    Attributes:
        id: the rule id.
        title: B's title when B has it, else A's.
        status: ``"resolved"``, ``"new"`` or ``"persisting"``.
        severity_a / severity_b: the most urgent severity on each side (None where absent).
        saving_frac: the largest estimated saving on each side (None where absent or not
            estimated).
        count: findings with this id on each side.
    """

    id: str
    title: str
    status: str
    severity_a: str | None
    severity_b: str | None
    saving_frac: Delta
    count: Delta


@dataclass(frozen=True)
class RunSide:
    """What identifies one side of the comparison."""

    name: str
    path: str | None
    mode: str
    device: str
    status: str
    tags: dict[str, Any]
    world_size: int
    steps: int
    target: str | None


@dataclass(frozen=True)
class Comparison:
    """Run A against run B.

    Attributes:
        a / b: the two runs.
        rank: the rank compared (the lowest rank present in both).
        step_us: median step time.
        step_min_us / step_max_us: fastest and slowest step.
        steps_per_s / samples_per_s: throughput.
        speedup: ``a.step / b.step`` (above 1: B is faster).
        throughput_ratio: B's samples (or steps) per second over A's.
        phases: per phase, in :data:`topoprof.run.PHASES` order.
        layers: per module, largest absolute change of self time first; modules found in one run
            only follow, by their self time.
        findings: per rule id (None when either side has no analysis): resolved, then new, then
            persisting.
        notes: caveats (different batch sizes, models, devices or modes).
    """

    a: RunSide
    b: RunSide
    rank: int
    step_us: Delta
    step_min_us: Delta
    step_max_us: Delta
    steps_per_s: Delta
    samples_per_s: Delta
    speedup: float | None
    throughput_ratio: float | None
    phases: tuple[PhaseDelta, ...]
    layers: tuple[LayerDelta, ...]
    findings: tuple[FindingDelta, ...] | None
    notes: tuple[str, ...] = ()

    @property
    def only_in_a(self) -> tuple[str, ...]:
        """Modules of A that B lacks."""
        return tuple(d.name for d in self.layers if d.status == "only_a")

    @property
    def only_in_b(self) -> tuple[str, ...]:
        """Modules of B that A lacks."""
        return tuple(d.name for d in self.layers if d.status == "only_b")

    def layer(self, name: str) -> LayerDelta:
        """The delta of the module called ``name``.

        Raises:
            KeyError: no module of that name in either run.
        """
        for d in self.layers:
            if d.name == name:
                return d
        raise KeyError(f"no module {name!r} in either run")

    def finding(self, rule_id: str) -> FindingDelta:
        """The delta of rule ``rule_id``.

        Raises:
            KeyError: the rule fired in neither run, or no analysis was available.
        """
        for f in self.findings or ():
            if f.id == rule_id:
                return f
        raise KeyError(f"rule {rule_id!r} fired in neither run")

    def _repr_html_(self) -> str:
        """The HTML comparison when a Jupyter notebook shows it (the report's renderer)."""
        from ..report.html import notebook_html

        return notebook_html(self)


# --- inputs ------------------------------------------------------------------------------------


def _split(subject: Any, target: str | None, analyze: bool) -> tuple[Run, Any]:
    """The run and its analysis (or None) for a path, a Run or an Analysis."""
    if isinstance(subject, (str, Path)):
        subject = load(subject)
    if isinstance(subject, Run):
        run = subject
        analysis = None
        if analyze:
            analysis = _analyze(run, target)
        return run, analysis
    if not hasattr(subject, "findings"):
        raise TypeError(f"compare() takes run directories, Runs or Analyses, got {type(subject).__name__}")
    run = getattr(subject, "run", None)
    if not isinstance(run, Run):
        path = getattr(subject, "run_path", None)
        if not path:
            raise ValueError("an analysis of a run that was never saved: compare the Run objects instead")
        run = load(path)
    return run, subject


def _analyze(run: Run, target: str | None) -> Any:
    import topoprof

    analyze_fn = getattr(topoprof, "analyze", None)
    if analyze_fn is None:  # no analysis engine in this version: compare the measurements only
        return None
    return analyze_fn(run, target=target) if target else analyze_fn(run)


def _side(run: Run, analysis: Any, rank: int) -> RunSide:
    m = run.manifest
    target = getattr(analysis, "target", None)
    target_name = getattr(target, "name", target) if target is not None else None
    dev = m.device or {}
    device = str(dev.get("name") or dev.get("type") or "?")
    if dev.get("type") and dev.get("name") and dev["type"] not in str(dev["name"]):
        device = f"{dev['type']} ({dev['name']})"
    return RunSide(
        name=m.name or (run.path.name if run.path else "run"),
        path=str(run.path) if run.path else None,
        mode=m.mode,
        device=device,
        status=m.status,
        tags=dict(m.tags),
        world_size=m.world_size,
        steps=len(run.rank(rank).steps),
        target=str(target_name) if target_name is not None else None,
    )


def _batch(run: Run) -> int | None:
    b = run.manifest.tags.get("batch_size")
    return b if isinstance(b, int) and not isinstance(b, bool) and b > 0 else None


# --- deltas ------------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _pair(sa: LayerStat | None, sb: LayerStat | None, attr: str) -> Delta:
    return Delta(_num(getattr(sa, attr)) if sa else None, _num(getattr(sb, attr)) if sb else None)


def _layer_deltas(la: Sequence[LayerStat], lb: Sequence[LayerStat]) -> tuple[LayerDelta, ...]:
    a_by = {s.name: s for s in la}
    b_by = {s.name: s for s in lb}
    both: list[LayerDelta] = []
    one: list[tuple[float, LayerDelta]] = []

    for name in [*a_by, *(n for n in b_by if n not in a_by)]:
        sa, sb = a_by.get(name), b_by.get(name)
        status = "both" if sa and sb else ("only_a" if sa else "only_b")
        ref = sa or sb
        assert ref is not None
        pair = partial(_pair, sa, sb)
        d = LayerDelta(
            name=name,
            kind=ref.kind,
            kind_b=sb.kind if sa and sb and sa.kind != sb.kind else None,
            status=status,
            leaf=ref.leaf,
            fwd_us=pair("fwd_us"),
            bwd_us=pair("bwd_us"),
            self_us=pair("self_us"),
            flops=pair("flops"),
            achieved_flop_per_s=pair("achieved_flop_per_s"),
        )
        if status == "both":
            both.append(d)
        else:
            one.append((ref.self_us, d))
    both.sort(key=lambda d: -abs(d.self_us.diff or 0.0))  # stable: module order among ties
    one.sort(key=lambda t: -t[0])
    return tuple(both) + tuple(d for _, d in one)


def _by_id(findings: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in findings:
        out.setdefault(f.id, []).append(f)
    return out


def _most_urgent(fs: list[Any]) -> str | None:
    from .findings import SEVERITIES

    if not fs:
        return None
    return min((f.severity for f in fs), key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else len(SEVERITIES))


def _largest_saving(fs: list[Any]) -> float | None:
    values = [f.saving.frac for f in fs if f.saving is not None and f.saving.frac is not None]
    return max(values) if values else None


def _finding_deltas(fa: Iterable[Any], fb: Iterable[Any]) -> tuple[FindingDelta, ...]:
    a_by, b_by = _by_id(fa), _by_id(fb)
    out: dict[str, list[FindingDelta]] = {s: [] for s in FINDING_STATUSES}
    for rule_id in [*a_by, *(i for i in b_by if i not in a_by)]:
        xa, xb = a_by.get(rule_id, []), b_by.get(rule_id, [])
        status = "persisting" if xa and xb else ("resolved" if xa else "new")
        out[status].append(FindingDelta(
            id=rule_id,
            title=(xb or xa)[0].title,
            status=status,
            severity_a=_most_urgent(xa),
            severity_b=_most_urgent(xb),
            saving_frac=Delta(_largest_saving(xa), _largest_saving(xb)),
            count=Delta(float(len(xa)), float(len(xb))),
        ))
    return tuple(d for s in FINDING_STATUSES for d in out[s])


def _notes(a: Run, b: Run, ba: StepBreakdown, bb: StepBreakdown) -> tuple[str, ...]:
    notes = []
    ta, tb = a.manifest.tags, b.manifest.tags
    if _batch(a) != _batch(b):
        notes.append(f"batch sizes differ ({_batch(a)} vs {_batch(b)}): compare samples/s, not step time")
    if ta.get("model") and tb.get("model") and ta.get("model") != tb.get("model"):
        notes.append(f"different models ({ta.get('model')} vs {tb.get('model')})")
    if a.manifest.mode != b.manifest.mode:
        notes.append(f"different modes ({a.manifest.mode} vs {b.manifest.mode}): trace mode adds overhead")
    da, db = a.manifest.device.get("type"), b.manifest.device.get("type")
    if da != db:
        notes.append(f"different devices ({da} vs {db})")
    if ba.forward_passes_per_step != bb.forward_passes_per_step:
        notes.append(f"forward passes per step differ ({ba.forward_passes_per_step:g} vs "
                     f"{bb.forward_passes_per_step:g})")
    return tuple(notes)


def compare(
    a: Any,
    b: Any,
    *,
    target: str | None = None,
    rank: int | None = None,
    analyze: bool = True,
) -> Comparison:
    """Compare run ``a`` (the baseline) with run ``b``.

    Args:
        a / b: run directories, :class:`~topoprof.run.Run` objects, or analyses (anything with a
            ``run`` attribute and ``findings``; their findings are compared).
        target: hardware target to analyse runs with, for the finding deltas.
        rank: rank to compare; default the lowest rank present in both runs.
        analyze: analyse runs given without an analysis (when the analysis engine is
            available), so findings can be compared; False compares measurements only.

    Returns:
        The :class:`Comparison`. It reads only the runs (loading them from disk when given
        paths) and computes nothing beyond the deltas.

    Raises:
        ValueError: the runs share no rank.
    """
    run_a, an_a = _split(a, target, analyze)
    run_b, an_b = _split(b, target, analyze)
    common = sorted(set(run_a.ranks) & set(run_b.ranks))
    if rank is None:
        if not common:
            raise ValueError(f"the runs share no rank (A: {sorted(run_a.ranks)}, B: {sorted(run_b.ranks)})")
        rank = common[0]
    ra, rb = run_a.rank(rank), run_b.rank(rank)
    ba, bb = step_breakdown(ra, _batch(run_a)), step_breakdown(rb, _batch(run_b))
    phases = tuple(
        PhaseDelta(
            p.phase,
            Delta(p.median_us, q.median_us),
            Delta(p.share, q.share),
        )
        for p, q in zip(ba.phases, bb.phases)
    )
    assert tuple(p.phase for p in phases) == PHASES
    samples = Delta(ba.samples_per_s, bb.samples_per_s)
    throughput = samples.ratio if samples.ratio is not None else _ratio(bb.steps_per_s, ba.steps_per_s)
    findings = None
    if an_a is not None and an_b is not None:
        findings = _finding_deltas(getattr(an_a, "findings", ()) or (), getattr(an_b, "findings", ()) or ())
    return Comparison(
        a=_side(run_a, an_a, rank),
        b=_side(run_b, an_b, rank),
        rank=rank,
        step_us=Delta(ba.step_us, bb.step_us),
        step_min_us=Delta(ba.step_min_us, bb.step_min_us),
        step_max_us=Delta(ba.step_max_us, bb.step_max_us),
        steps_per_s=Delta(ba.steps_per_s, bb.steps_per_s),
        samples_per_s=samples,
        speedup=_ratio(ba.step_us, bb.step_us),
        throughput_ratio=throughput,
        phases=phases,
        layers=_layer_deltas(layer_stats(ra), layer_stats(rb)),
        findings=findings,
        notes=_notes(run_a, run_b, ba, bb),
    )
