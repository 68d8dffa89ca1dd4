"""topoprof's NVTX ranges, observed for real through an NVTX injection library.

Each test runs a small training loop in a subprocess with the recorder of
``tests/nvtx_recorder`` attached (NVTX_INJECTION64_PATH must be set before the first NVTX call)
and checks the exact names, nesting, payloads and balance of the ranges in domain ``topoprof``.
"""

from __future__ import annotations

import textwrap

import pytest

from nvtxrec import outline, process_ranges, range_forest, run_recorded

PRELUDE = textwrap.dedent(
    """
    import torch
    from torch import nn
    import topoprof

    class Raises(nn.Module):
        def __init__(self, exc=None, at_call=-1):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.calls = 0
            self.exc = exc
            self.at_call = at_call
        def forward(self, x):
            self.calls += 1
            if self.calls == self.at_call:
                raise self.exc("boom")
            return self.lin(x)

    class Net(nn.Module):
        def __init__(self, exc=None, at_call=-1):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            self.inner = Raises(exc, at_call)
            self.head = nn.Linear(4, 2)
        def forward(self, x):
            return self.head(self.inner(self.body(x)))

    def loop(model, prof, iters):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        data = [torch.randn(3, 4) for _ in range(iters)]
        for x in prof.data(data):
            model(x).sum().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    """
)

FWD = [
    "fwd Net",
    "  fwd body",
    "    fwd body.0",
    "    fwd body.1",
    "  fwd inner",
    "    fwd inner.lin",
    "  fwd head",
]
BWD = [
    "bwd Net",
    "  bwd head",
    "  bwd inner",
    "    bwd inner.lin",
    "  bwd body",
    "    bwd body.1",
    "    bwd body.0",
]


def _indent(lines, n=1):
    return ["  " * n + line for line in lines]


def test_step_and_layer_ranges_nest_exactly(tmp_path, nvtx_recorder_lib):
    code = PRELUDE + textwrap.dedent(
        """
        model = Net()
        with topoprof.profile(model, "run", steps=2, skip_first=1, tensorboard=False) as prof:
            loop(model, prof, 5)
        """
    )
    rec = run_recorded(code, tmp_path, lib=nvtx_recorder_lib)
    assert rec.injected
    forest = range_forest(rec.events)  # raises on any unbalanced range
    assert len(forest) == 1  # CPU: forward and backward ranges on the main thread
    (main,) = forest.values()
    expected = []
    for step in range(3):  # steps 0 (warm-up, captures the graph), 1 and 2 (profiled)
        expected += [f"step {step}"] + _indent(FWD) + _indent(BWD)
    assert outline(main) == expected
    assert [n.payload for n in main] == [0, 1, 2]
    # nothing after the profile: the loop went on unprofiled for steps 3 and 4
    assert not [e for e in rec.events if e.domain == "topoprof" and e.ts_ns > main[-1].end_ns]


def test_phase_ranges_carry_the_step_number_and_close(tmp_path, nvtx_recorder_lib):
    code = PRELUDE + textwrap.dedent(
        """
        model = Net()
        with topoprof.profile(model, "run", steps=2, skip_first=1, tensorboard=False) as prof:
            loop(model, prof, 3)
        """
    )
    rec = run_recorded(code, tmp_path, lib=nvtx_recorder_lib)
    phases = process_ranges(rec.events)
    assert all(end is not None for _, end in phases.values())
    seen = [(start.message, start.payload) for start, _ in sorted(phases.values(), key=lambda p: p[0].ts_ns)]
    expected = []
    for step in range(3):
        expected += [("data", step), ("forward", step), ("backward", step), ("optimizer", step)]
    assert seen == expected
    colors = {start.message: start.color for start, _ in phases.values()}
    assert len(set(colors.values())) == 4  # one colour per phase
    # each phase lies inside its step range
    (main,) = range_forest(rec.events).values()
    for start, end in phases.values():
        step = main[start.payload]
        assert step.start_ns <= start.ts_ns and end.ts_ns <= step.end_ns


@pytest.mark.parametrize("exc", ["RuntimeError", "KeyboardInterrupt"])
def test_ranges_stay_balanced_when_forward_raises(tmp_path, nvtx_recorder_lib, exc):
    code = PRELUDE + textwrap.dedent(
        f"""
        model = Net({exc}, at_call=3)  # raises inside 'fwd inner' during step 2
        try:
            with topoprof.profile(model, "run", steps=5, skip_first=1, tensorboard=False) as prof:
                loop(model, prof, 6)
        except {exc}:
            print("raised")
        run = topoprof.load("run")
        print(len(run.rank().steps), run.manifest.status)
        """
    )
    rec = run_recorded(code, tmp_path, lib=nvtx_recorder_lib)
    assert rec.stdout.splitlines()[0] == "raised"
    assert rec.stdout.splitlines()[1].startswith(f"1 ")  # step 1 finished; step 2 raised
    (main,) = range_forest(rec.events).values()  # balanced, or it raises
    last = outline([main[-1]])
    assert last == ["step 2", "  fwd Net", "    fwd body", "      fwd body.0", "      fwd body.1", "    fwd inner"]
    phases = process_ranges(rec.events)
    assert all(end is not None for _, end in phases.values())


def test_no_ranges_without_a_profile(tmp_path, nvtx_recorder_lib):
    code = PRELUDE + textwrap.dedent(
        """
        model = Net()
        model(torch.randn(2, 4)).sum().backward()
        """
    )
    rec = run_recorded(code, tmp_path, lib=nvtx_recorder_lib)
    assert [e for e in rec.events if e.domain == "topoprof"] == []


def test_ranges_stay_balanced_when_backward_raises_and_training_goes_on(tmp_path, nvtx_recorder_lib):
    code = PRELUDE + textwrap.dedent(
        """
        class Fail(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()
            @staticmethod
            def backward(ctx, g):
                raise RuntimeError("no")

        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with topoprof.profile(model, "run", steps=3, skip_first=1, tensorboard=False) as prof:
            for i in range(5):
                out = model(torch.randn(3, 4)).sum()
                try:
                    (Fail.apply(out) if i == 2 else out).backward()
                except RuntimeError:
                    pass
                opt.step()
                opt.zero_grad()
                prof.step()
        """
    )
    rec = run_recorded(code, tmp_path, lib=nvtx_recorder_lib)
    (main,) = range_forest(rec.events).values()  # balanced, or it raises
    assert [n.name for n in main] == ["step 0", "step 1", "step 2", "step 3"]
    assert all(end is not None for _, end in process_ranges(rec.events).values())
