"""Per-layer and per-phase times are exact on a model whose right answer is known.

The fake clock moves only inside the model's layers, the data loader and the optimizer, so
every figure the profiler reports must equal the planted one to the nanosecond.
"""

from __future__ import annotations

import pytest
import torch

import topoprof
from fixtures.models import FakeClock, FakeTimedNet

DATA_US = 40.0
OPTIMIZER_US = 25.0


class SlowSGD(torch.optim.SGD):
    def __init__(self, params, clock: FakeClock) -> None:
        super().__init__(params, lr=0.01)
        self.clock = clock

    def step(self, closure=None):  # type: ignore[override]
        self.clock.advance(OPTIMIZER_US)
        return super().step(closure)


def batches(clock: FakeClock, n: int):
    for _ in range(n):
        clock.advance(DATA_US)
        yield torch.ones(2, 4, requires_grad=True)


def profile_fake(tmp_path, steps=4, skip_first=2):
    clock = FakeClock()
    model = FakeTimedNet(clock)
    opt = SlowSGD(model.parameters(), clock)
    with topoprof.profile(model, tmp_path / "run", steps=steps, skip_first=skip_first, clock=clock, tensorboard=False) as prof:
        for x in prof.data(batches(clock, skip_first + steps)):
            model(x).sum().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    return prof.run


EXPECTED = {
    # name: (calls, fwd, bwd, self_fwd, self_bwd) in us
    "nested.a": (1, 100, 1000, 100, 1000),
    "nested.b": (1, 200, 2000, 200, 2000),
    "nested": (1, 350, 3300, 50, 300),
    "branches.q": (1, 10, 100, 10, 100),
    "branches.k": (1, 20, 200, 20, 200),
    "branches.v": (1, 30, 400, 30, 400),
    "branches": (1, 60, 700, 0, 0),
    "shared": (2, 10, 14, 10, 14),
    "": (1, 420, 4014, 0, 0),
}


def test_layer_times_are_exact(tmp_path):
    run = profile_fake(tmp_path)
    rank = run.rank(0)
    assert len(rank.steps) == 4
    for name, (calls, fwd, bwd, self_fwd, self_bwd) in EXPECTED.items():
        m = rank.module(name)
        assert m.calls_per_step == [calls] * 4, name
        assert m.fwd_us == pytest.approx([fwd] * 4, abs=1e-9), name
        assert m.bwd_us == pytest.approx([bwd] * 4, abs=1e-9), name
        assert m.self_fwd_us == pytest.approx([self_fwd] * 4, abs=1e-9), name
        assert m.self_bwd_us == pytest.approx([self_bwd] * 4, abs=1e-9), name


def test_parallel_branches_are_not_charged_for_each_other(tmp_path):
    # q, k and v consume the same input; autograd runs v's backward, then k's, then q's.
    # A profiler that ends a layer's backward when the gradient of its *input* is complete
    # would charge v for k and q as well.
    rank = profile_fake(tmp_path).rank(0)
    assert rank.module("branches.v").bwd_us[0] == pytest.approx(400)
    assert rank.module("branches.k").bwd_us[0] == pytest.approx(200)


def test_phases_are_exact_and_add_up_to_the_step(tmp_path):
    rank = profile_fake(tmp_path).rank(0)
    for step in rank.steps:
        assert step.phases_us["data"] == pytest.approx(DATA_US)
        assert step.phases_us["forward"] == pytest.approx(420)
        assert step.phases_us["backward"] == pytest.approx(4014)
        assert step.phases_us["optimizer"] == pytest.approx(OPTIMIZER_US)
        assert step.phases_us["other"] == pytest.approx(0, abs=1e-9)
        assert step.duration_us == pytest.approx(sum(step.phases_us.values()))
        assert step.duration_us == pytest.approx(DATA_US + 420 + 4014 + OPTIMIZER_US)
        assert (step.forward_passes, step.backward_passes, step.optimizer_steps) == (1, 1, 1)


def test_graph_attributes_are_medians_with_min_and_max(tmp_path):
    g = profile_fake(tmp_path).graph()
    node = g.nodes["nested"]
    assert node["fwd_us"] == pytest.approx(350)
    assert node["self_bwd_us"] == pytest.approx(300)
    assert node["fwd_us_min"] == pytest.approx(350) and node["fwd_us_max"] == pytest.approx(350)
    assert g.nodes["shared"]["calls"] == 2


def test_a_model_returning_a_dataclass_is_timed_and_linked_to_the_output(tmp_path):
    import dataclasses

    from torch import nn

    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor
        aux: int = 0

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return Out(self.lin(x))

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with topoprof.profile(model, tmp_path / "r", steps=2, skip_first=1, tensorboard=False) as prof:
        for _ in range(3):
            model(torch.randn(3, 4)).logits.sum().backward()
            opt.step()
            prof.step()
    assert all(b > 0 for b in prof.run.rank().module("").bwd_us)
    assert ("lin", "output") in prof.run.graph().edges


def test_a_second_backward_over_the_same_graph_is_timed_too(tmp_path):
    clock = FakeClock()
    model = FakeTimedNet(clock)
    opt = SlowSGD(model.parameters(), clock)
    with topoprof.profile(model, tmp_path / "run", steps=2, skip_first=1, clock=clock, tensorboard=False) as prof:
        for x in prof.data(batches(clock, 3)):
            out = model(x).sum()
            out.backward(retain_graph=True)  # e.g. two losses over one graph
            out.backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    rank = prof.run.rank()
    for name, (calls, fwd, bwd, self_fwd, self_bwd) in EXPECTED.items():
        m = rank.module(name)
        assert m.bwd_us == pytest.approx([2 * bwd] * 2, abs=1e-9), name
        assert m.self_bwd_us == pytest.approx([2 * self_bwd] * 2, abs=1e-9), name
        assert m.fwd_us == pytest.approx([fwd] * 2, abs=1e-9), name
    assert all(s.backward_passes == 2 for s in rank.steps)
    assert all(s.phases_us["backward"] == pytest.approx(2 * 4014) for s in rank.steps)
