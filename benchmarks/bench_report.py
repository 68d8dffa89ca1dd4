"""Benchmark: analysis and HTML rendering of a synthetic 1,000-layer run.

Builds a GPT-like run from plain data (no torch: blocks of attention and MLP, residual edges,
per-step times with noise), then times ``topoprof.analyze`` and ``topoprof.write_report`` to
HTML, and prints both times and the file size. Goal: under 5 s and under 5 MB together.

    python benchmarks/bench_report.py [--layers 1000] [--ranks 1] [--out /tmp/bench_report.html]

:func:`synthetic_run` is also what the report tests use for their 1,000-layer case.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from topoprof.run import PHASES, EdgeRecord, Manifest, ModuleRecord, RankData, Run, StepRecord

__all__ = ["LEAVES_PER_BLOCK", "synthetic_run", "main"]

#: Leaf modules per transformer block: ln1, q, k, v, attn.drop, proj, ln2, fc1, act, fc2, drop.
LEAVES_PER_BLOCK = 11
_BATCH, _SEQ, _DIM, _HIDDEN, _VOCAB = 8, 512, 768, 3072, 50257
_ELEM_BYTES = 4  # float32


def _mod(name: str, kind: str, parent: str | None, leaf: bool, **kw: Any) -> ModuleRecord:
    return ModuleRecord(name=name, kind=kind, parent=parent, leaf=leaf, **kw)


def synthetic_run(n_layers: int = 1000, *, steps: int = 5, ranks: int = 1, seed: int = 0,
                  name: str | None = None) -> Run:
    """A GPT-like run with about ``n_layers`` leaf modules (plain data, no torch).

    Args:
        n_layers: leaf modules wanted; blocks of :data:`LEAVES_PER_BLOCK` are added until the
            embedding, the blocks, the final norm and the head reach it.
        steps: profiled steps per rank.
        ranks: ranks (the last rank is made 15 % slower: a straggler).
        seed: random seed of the times.
        name: run name (default ``synthetic-<n_layers>``).
    """
    rng = random.Random(seed)
    blocks = max(1, math.ceil((n_layers - 3) / LEAVES_PER_BLOCK))
    tokens = _BATCH * _SEQ
    act = tokens * _DIM * _ELEM_BYTES

    def linear_flops(i: int, o: int) -> int:
        return 2 * tokens * i * o

    # (name, kind, parent, leaf, fwd_us, flops_fwd, params, ops, out_dim)
    specs: list[dict[str, Any]] = []

    def leaf(name: str, kind: str, parent: str, fwd_us: float, flops: int = 0, params: int = 0,
             ops: dict[str, int] | None = None, width: int = _DIM) -> None:
        specs.append(dict(name=name, kind=kind, parent=parent, leaf=True, fwd=fwd_us, flops=flops, params=params,
                          ops=ops or {}, width=width))

    specs.append(dict(name="", kind="SyntheticGPT", parent=None, leaf=False, own=5.0, ops={"add": 1}))
    leaf("embed", "Embedding", "", 40.0, 0, _VOCAB * _DIM, {"embedding": 1})
    specs.append(dict(name="blocks", kind="ModuleList", parent="", leaf=False, own=0.0, ops={}))
    for b in range(blocks):
        p = f"blocks.{b}"
        specs.append(dict(name=p, kind="Block", parent="blocks", leaf=False, own=12.0, ops={"add": 2}))
        leaf(f"{p}.ln1", "LayerNorm", p, 30.0, 0, 2 * _DIM, {"layer_norm": 1})
        specs.append(dict(name=f"{p}.attn", kind="Attention", parent=p, leaf=False, own=90.0,
                          ops={"matmul": 2, "softmax": 1, "view": 4, "transpose": 3}))
        for x in ("q", "k", "v"):
            leaf(f"{p}.attn.{x}", "Linear", f"{p}.attn", 180.0, linear_flops(_DIM, _DIM), _DIM * _DIM + _DIM,
                 {"linear": 1})
        leaf(f"{p}.attn.drop", "Dropout", f"{p}.attn", 25.0, 0, 0, {"dropout": 1})
        leaf(f"{p}.attn.proj", "Linear", f"{p}.attn", 180.0, linear_flops(_DIM, _DIM), _DIM * _DIM + _DIM,
             {"linear": 1})
        leaf(f"{p}.ln2", "LayerNorm", p, 30.0, 0, 2 * _DIM, {"layer_norm": 1})
        specs.append(dict(name=f"{p}.mlp", kind="Sequential", parent=p, leaf=False, own=0.0, ops={}))
        leaf(f"{p}.mlp.0", "Linear", f"{p}.mlp", 700.0, linear_flops(_DIM, _HIDDEN), _DIM * _HIDDEN + _HIDDEN,
             {"linear": 1}, _HIDDEN)
        leaf(f"{p}.mlp.1", "GELU", f"{p}.mlp", 60.0, 0, 0, {"gelu": 1}, _HIDDEN)
        leaf(f"{p}.mlp.2", "Linear", f"{p}.mlp", 700.0, linear_flops(_HIDDEN, _DIM), _HIDDEN * _DIM + _DIM,
             {"linear": 1})
        leaf(f"{p}.mlp.3", "Dropout", f"{p}.mlp", 25.0, 0, 0, {"dropout": 1})
    leaf("ln_f", "LayerNorm", "", 30.0, 0, 2 * _DIM, {"layer_norm": 1})
    leaf("head", "Linear", "", 2500.0, linear_flops(_DIM, _VOCAB), _DIM * _VOCAB, {"linear": 1}, _VOCAB)

    children: dict[str, list[str]] = {}
    for s in specs:
        if s["parent"] is not None:
            children.setdefault(s["parent"], []).append(s["name"])
    by_name = {s["name"]: s for s in specs}

    def rank_data(rank: int) -> RankData:
        slow = 1.15 if ranks > 1 and rank == ranks - 1 else 1.0
        noise = [[rng.lognormvariate(0.0, 0.05) for _ in range(steps)] for _ in specs]
        recs: dict[str, ModuleRecord] = {}
        for i, s in reversed(list(enumerate(specs))):  # children before parents
            kids = [recs[c] for c in children.get(s["name"], [])]
            if s["leaf"]:
                fwd = [s["fwd"] * slow * n for n in noise[i]]
                bwd = [2.0 * f for f in fwd]
                sf, sb = fwd, bwd
                flops_fwd, params = s["flops"], s["params"]
                out_shape = [_BATCH, _SEQ, s["width"]]
                in_shape = [_BATCH, _SEQ] if s["kind"] == "Embedding" else [_BATCH, _SEQ, _DIM]
                act_bytes = tokens * s["width"] * _ELEM_BYTES
            else:
                sf = [s["own"] * slow * n for n in noise[i]]
                sb = [2.0 * f for f in sf]
                fwd = [sf[k] + sum(c.fwd_us[k] for c in kids) for k in range(steps)]
                bwd = [sb[k] + sum(c.bwd_us[k] for c in kids) for k in range(steps)]
                flops_fwd = sum(c.flops_fwd for c in kids) + (4 * tokens * _SEQ * _DIM if s["kind"] == "Attention" else 0)
                params = sum(c.params for c in kids)
                out_shape = [_BATCH, _SEQ, _VOCAB] if s["name"] == "" else [_BATCH, _SEQ, _DIM]
                in_shape = [_BATCH, _SEQ] if s["name"] in ("", "blocks") else [_BATCH, _SEQ, _DIM]
                act_bytes = act
            recs[s["name"]] = _mod(
                s["name"], s["kind"], s["parent"], s["leaf"], params=params, param_bytes=params * _ELEM_BYTES,
                in_shapes=[in_shape], out_shapes=[out_shape], dtype="float32", flops_fwd=flops_fwd,
                flops_bwd=2 * flops_fwd, act_bytes=act_bytes, ops=dict(s["ops"]),
                calls_per_step=[1] * steps, fwd_us=fwd, bwd_us=bwd, self_fwd_us=sf, self_bwd_us=sb,
            )
        modules = [recs[s["name"]] for s in specs]
        edges = _edges(blocks, act)
        root = recs[""]
        step_list = []
        for k in range(steps):
            fwd, bwd = root.fwd_us[k], root.bwd_us[k]
            phases = {"data": 800.0 * slow * rng.lognormvariate(0, 0.1), "forward": fwd, "backward": bwd,
                      "optimizer": 0.12 * (fwd + bwd), "other": 300.0 * rng.lognormvariate(0, 0.1)}
            comm = (0.2 * bwd, 0.03 * bwd) if ranks > 1 else (None, None)
            step_list.append(StepRecord(index=k, duration_us=sum(phases[p] for p in PHASES), phases_us=phases,
                                        forward_passes=1, backward_passes=1, optimizer_steps=1,
                                        comm_us=comm[0], comm_exposed_us=comm[1],
                                        comm_buckets=8 if ranks > 1 else 0,
                                        comm_bytes=root.param_bytes if ranks > 1 else 0))
        return RankData(
            rank=rank, world_size=ranks, run_id="synthetic", host=f"node{rank // 8}", device=f"cuda:{rank % 8}",
            steps=step_list, modules=modules, edges=edges,
            optimizers=[{"kind": "AdamW", "params": root.params, "param_tensors": 4 + 12 * blocks,
                         "fused": None, "foreach": None, "lr": 3e-4}],
            settings={"cudnn_enabled": True, "cudnn_benchmark": False, "cudnn_allow_tf32": True,
                      "matmul_allow_tf32": False, "float32_matmul_precision": "highest",
                      "deterministic": False, "autocast": {"enabled": False, "dtype": None}},
            graph_step=None,
        )

    manifest = Manifest(
        name=name or f"synthetic-{n_layers}", run_id="synthetic", created="2026-01-01T00:00:00+00:00",
        mode="layers", versions={"topoprof": "synthetic", "torch": None, "python": sys.version.split()[0]},
        device={"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "count": 1}, host="node0",
        hosts=sorted({f"node{r // 8}" for r in range(ranks)}), world_size=ranks, ranks=list(range(ranks)),
        steps_requested=steps, skip_first=3, command=["synthetic"],
        tags={"model": "SyntheticGPT", "batch_size": _BATCH},
    )
    _ = by_name
    return Run(None, manifest, {r: rank_data(r) for r in range(ranks)})


def _edges(blocks: int, act: int) -> list[EdgeRecord]:
    shape = [_BATCH, _SEQ, _DIM]
    out: list[EdgeRecord] = []

    def e(src: str, dst: str, via: tuple[str, ...] = (), width: int = _DIM) -> None:
        out.append(EdgeRecord(src=src, dst=dst, shape=[_BATCH, _SEQ, width], dtype="float32",
                              bytes=act * width // _DIM, via=list(via)))

    e("input", "embed", width=1)
    prev = ["embed"]  # the modules whose outputs sum to the residual stream
    for b in range(blocks):
        p = f"blocks.{b}"
        for s in prev:
            e(s, f"{p}.ln1", ("add",) if len(prev) > 1 else ())
        for x in ("q", "k", "v"):
            e(f"{p}.ln1", f"{p}.attn.{x}")
        e(f"{p}.attn.q", f"{p}.attn.drop", ("view", "transpose", "matmul", "softmax"))
        e(f"{p}.attn.k", f"{p}.attn.drop", ("view", "transpose", "matmul", "softmax"))
        e(f"{p}.attn.drop", f"{p}.attn.proj", ("matmul", "transpose", "view"))
        e(f"{p}.attn.v", f"{p}.attn.proj", ("view", "transpose", "matmul", "transpose", "view"))
        for s in prev:
            e(s, f"{p}.ln2", ("add",))
        e(f"{p}.attn.proj", f"{p}.ln2", ("add",))
        e(f"{p}.ln2", f"{p}.mlp.0")
        e(f"{p}.mlp.0", f"{p}.mlp.1", width=_HIDDEN)
        e(f"{p}.mlp.1", f"{p}.mlp.2", width=_HIDDEN)
        e(f"{p}.mlp.2", f"{p}.mlp.3")
        prev = [f"{p}.attn.proj", f"{p}.mlp.3"]
    for s in prev:
        e(s, "ln_f", ("add",))
    e("ln_f", "head")
    e("head", "output", width=_VOCAB)
    del shape
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--target", default="dgx-a100")
    parser.add_argument("--out", default="/tmp/bench_report.html")
    parser.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    args = parser.parse_args(argv)

    import topoprof

    t0 = time.perf_counter()
    run = synthetic_run(args.layers, ranks=args.ranks)
    t_build = time.perf_counter() - t0
    leaves = sum(m.leaf for m in run.rank(0).modules)
    best_an = best_html = math.inf
    out = Path(args.out)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        analysis = topoprof.analyze(run, target=args.target)
        t1 = time.perf_counter()
        topoprof.write_report(analysis, out, run=run)
        t2 = time.perf_counter()
        best_an, best_html = min(best_an, t1 - t0), min(best_html, t2 - t1)
    size = out.stat().st_size
    total = best_an + best_html
    print(f"synthetic run: {leaves} leaf layers, {len(run.rank(0).modules)} modules, {args.ranks} rank(s) "
          f"(built in {t_build:.2f} s)")
    print(f"analysis      {best_an:6.2f} s")
    print(f"HTML report   {best_html:6.2f} s   ({out}, {size / 1e6:.2f} MB)")
    print(f"total         {total:6.2f} s   goal: < 5 s and < 5 MB -> "
          f"{'OK' if total < 5 and size < 5e6 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
