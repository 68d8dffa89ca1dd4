"""Hand-built runs for the analysis tests: exact control over every figure the rules read.

Nothing here imports torch, so the no-torch test can use the builders too.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from topoprof.run import EdgeRecord, Manifest, ModuleRecord, RankData, Run, StepRecord

__all__ = ["DEFAULT_PHASES", "module", "linear", "conv2d", "pointwise", "make_rank", "adamw", "make_run", "simple_run"]

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1}
DEFAULT_PHASES = {"data": 100.0, "forward": 3000.0, "backward": 6000.0, "optimizer": 400.0, "other": 500.0}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def module(name: str, kind: str, *, params: int = 0, dtype: str = "float32", in_shapes: Sequence[Sequence[int]] = (),
           out_shapes: Sequence[Sequence[int]] = (), flops_fwd: int = 0, flops_bwd: int | None = None,
           act_bytes: int | None = None, ops: dict[str, int] | None = None, memory_format: str | None = None,
           fwd_us: float = 10.0, bwd_us: float = 20.0, parent: str | None = "", leaf: bool = True,
           param_bytes: int | None = None, calls: int = 1, steps: int = 5) -> ModuleRecord:
    """One module with identical times in every step."""
    elem = DTYPE_BYTES.get(dtype, 4)
    if act_bytes is None:
        act_bytes = sum(_numel(s) for s in out_shapes) * elem
    return ModuleRecord(
        name=name, kind=kind, parent=parent, leaf=leaf, params=params,
        param_bytes=params * elem if param_bytes is None else param_bytes,
        in_shapes=[list(s) for s in in_shapes], out_shapes=[list(s) for s in out_shapes], dtype=dtype,
        flops_fwd=flops_fwd, flops_bwd=2 * flops_fwd if flops_bwd is None else flops_bwd, act_bytes=act_bytes,
        ops=dict(ops or {}), in_memory_format=memory_format, calls_per_step=[calls] * steps,
        fwd_us=[fwd_us] * steps, bwd_us=[bwd_us] * steps, self_fwd_us=[fwd_us] * steps, self_bwd_us=[bwd_us] * steps,
    )


def linear(name: str, in_f: int, out_f: int, tokens: int, *, dtype: str = "float32", bias: bool = True,
           **kw: Any) -> ModuleRecord:
    """An ``nn.Linear`` over ``tokens`` rows: 2·M·K·N FLOPs forward, twice that backward."""
    return module(name, "Linear", params=in_f * out_f + (out_f if bias else 0), dtype=dtype,
                  in_shapes=[[tokens, in_f]], out_shapes=[[tokens, out_f]], flops_fwd=2 * tokens * in_f * out_f,
                  ops={"linear": 1}, **kw)


def conv2d(name: str, c_in: int, c_out: int, batch: int, hw: int, *, k: int = 3, dtype: str = "float32",
           memory_format: str = "contiguous", **kw: Any) -> ModuleRecord:
    """An ``nn.Conv2d`` (same padding)."""
    return module(name, "Conv2d", params=c_in * c_out * k * k + c_out, dtype=dtype,
                  in_shapes=[[batch, c_in, hw, hw]], out_shapes=[[batch, c_out, hw, hw]],
                  flops_fwd=2 * batch * c_out * hw * hw * c_in * k * k, ops={"conv2d": 1},
                  memory_format=memory_format, **kw)


def pointwise(name: str, kind: str, op: str, shape: Sequence[int], *, dtype: str = "float32", params: int = 0,
              **kw: Any) -> ModuleRecord:
    """An elementwise or normalisation layer (no FLOPs counted)."""
    return module(name, kind, params=params, dtype=dtype, in_shapes=[shape], out_shapes=[shape], flops_fwd=0,
                  ops={op: 1}, **kw)


def make_rank(layers: Iterable[ModuleRecord], *, phases: dict[str, float] | None = None, steps: int = 5,
              durations: Sequence[float] | None = None, rank: int = 0, root_kind: str = "Net",
              optimizers: list[dict[str, Any]] | None = None, host_syncs: list[dict[str, Any]] | None = None,
              settings: dict[str, Any] | None = None, device: str = "cpu", forward_passes: int = 1,
              edges: list[EdgeRecord] | None = None) -> RankData:
    """A rank whose root module ``""`` holds ``layers`` (children of the root), chained by edges.

    Every step has ``phases`` (default :data:`DEFAULT_PHASES`); ``durations`` overrides the
    step lengths (the extra time, or the shortfall, goes to ``other``).
    """
    layers = list(layers)
    phases = dict(phases or DEFAULT_PHASES)
    base = sum(phases.values())
    durations = list(durations) if durations is not None else [base] * steps
    step_records = []
    for i, d in enumerate(durations):
        ph = dict(phases)
        ph["other"] = ph.get("other", 0.0) + (d - base)
        step_records.append(StepRecord(index=i + 3, duration_us=d, phases_us=ph, forward_passes=forward_passes,
                                       backward_passes=forward_passes, optimizer_steps=1))
    n = len(durations)
    for m in layers:
        for key in ("calls_per_step", "fwd_us", "bwd_us", "self_fwd_us", "self_bwd_us"):
            values = getattr(m, key)
            setattr(m, key, (values + values[-1:] * n)[:n] if values else values)
    top = [m for m in layers if m.parent == ""]
    first = layers[0] if layers else None
    root = ModuleRecord(
        name="", kind=root_kind, parent=None, leaf=not layers,
        params=sum(m.params for m in top), param_bytes=sum(m.param_bytes for m in top),
        in_shapes=first.in_shapes if first else [], out_shapes=layers[-1].out_shapes if layers else [],
        dtype=layers[-1].dtype if layers else "float32",
        flops_fwd=sum(m.flops_fwd for m in top), flops_bwd=sum(m.flops_bwd for m in top),
        act_bytes=layers[-1].act_bytes if layers else 0, ops={}, calls_per_step=[1] * n,
        fwd_us=[sum(m.fwd_us[0] for m in top)] * n, bwd_us=[sum(m.bwd_us[0] for m in top)] * n,
        self_fwd_us=[0.0] * n, self_bwd_us=[0.0] * n,
    )
    if edges is None:
        leaves = [m.name for m in layers if m.leaf]
        chain = ["input", *leaves, "output"]
        edges = [EdgeRecord(a, b, [1], "float32", 4) for a, b in zip(chain, chain[1:])]
    return RankData(
        rank=rank, device=device, steps=step_records, modules=[root, *layers], edges=edges,
        optimizers=list(optimizers if optimizers is not None else []),
        host_syncs=list(host_syncs or []),
        settings=dict(settings if settings is not None else {
            "cudnn_enabled": True, "cudnn_benchmark": False, "cudnn_allow_tf32": True, "matmul_allow_tf32": False,
            "float32_matmul_precision": "highest", "deterministic": False,
            "autocast": {"enabled": False, "dtype": None}}),
    )


def adamw(rank_or_params: RankData | int, tensors: int = 4, **flags: Any) -> dict[str, Any]:
    """An AdamW optimizer record over a rank's parameters (or a parameter count)."""
    params = rank_or_params if isinstance(rank_or_params, int) else rank_or_params.modules[0].params
    return {"kind": "AdamW", "params": params, "param_tensors": tensors, "fused": flags.get("fused"),
            "foreach": flags.get("foreach"), "lr": 1e-3}


def make_run(*ranks: RankData, tags: dict[str, Any] | None = None, name: str = "hand-built") -> Run:
    """A run of the given ranks (the manifest's world size follows)."""
    manifest = Manifest(name=name, mode="layers", world_size=len(ranks), ranks=[r.rank for r in ranks],
                        tags=dict(tags or {}))
    return Run(None, manifest, {r.rank: r for r in ranks})


def simple_run(layers: Iterable[ModuleRecord], *, tags: dict[str, Any] | None = None, optimizer: bool = True,
               **rank_kw: Any) -> Run:
    """One rank, an AdamW optimizer over all parameters (unless ``optimizer=False``)."""
    rank = make_rank(layers, **rank_kw)
    if optimizer and "optimizers" not in rank_kw:
        rank.optimizers = [adamw(rank, tensors=max(2 * (len(rank.modules) - 1), 1), fused=True)]
    return make_run(rank, tags=tags if tags is not None else {"batch_size": 32})
