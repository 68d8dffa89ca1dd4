"""The profile() API: steps, warm-up, phases, decorator, optimizers, clean-up, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import topoprof
from topoprof.errors import ProfilerUsageError
from fixtures.models import MLP, FakeClock, FakeTimedNet


def _hooks_on(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def _train(model, opt, prof, iters, accumulate=1, call_step=True):
    x = torch.randn(4, 8)
    for i in range(iters):
        for _ in range(accumulate):
            model(x).sum().backward()
        opt.step()
        opt.zero_grad()
        if call_step:
            prof.step()


def test_steps_and_warmup_are_counted_as_documented(tmp_path):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=3, skip_first=2, tensorboard=False) as prof:
        _train(model, opt, prof, 8)
        assert not prof.active  # profiling ended after 2 + 3 steps; the loop went on
    run = prof.run
    assert [s.index for s in run.rank().steps] == [2, 3, 4]
    assert run.rank().graph_step == 1  # the last warm-up step captured the graph
    assert run.manifest.status == "complete"
    assert _hooks_on(model) == 0


def test_skip_first_zero_adds_one_untimed_capture_step(tmp_path):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=2, skip_first=0, tensorboard=False) as prof:
        _train(model, opt, prof, 5)
    assert [s.index for s in prof.run.rank().steps] == [1, 2]
    assert prof.run.rank().graph_step == 0


def test_loop_shorter_than_requested_keeps_finished_steps(tmp_path):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=10, skip_first=1, tensorboard=False) as prof:
        _train(model, opt, prof, 4)
    assert len(prof.run.rank().steps) == 3
    assert prof.run.manifest.status.startswith("incomplete")
    assert topoprof.load(tmp_path / "r").manifest.status == prof.run.manifest.status


def test_decorator_form_delimits_steps_by_the_optimizer(tmp_path):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    profiler = topoprof.profile(model, tmp_path / "r", steps=3, skip_first=1, tensorboard=False)

    @profiler
    def train():
        _train(model, opt, None, 6, call_step=False)
        return "done"

    assert train() == "done"
    steps = profiler.run.rank().steps
    assert [s.index for s in steps] == [1, 2, 3]
    assert all(s.optimizer_steps == 1 and s.forward_passes == 1 for s in steps)
    assert _hooks_on(model) == 0


def test_gradient_accumulation_and_several_optimizers(tmp_path):
    model = MLP()
    opt_body = torch.optim.SGD(model.body.parameters(), lr=0.01)
    opt_head = torch.optim.Adam(model.head.parameters(), lr=0.01)
    x = torch.randn(4, 8)
    with topoprof.profile(model, tmp_path / "r", steps=4, skip_first=1, tensorboard=False) as prof:
        for i in range(5):
            for _ in range(3):  # three micro-batches
                model(x).sum().backward()
            if i % 2 == 0:  # some steps only accumulate
                opt_body.step()
                opt_head.step()
                opt_body.zero_grad()
                opt_head.zero_grad()
            prof.step()
    steps = prof.run.rank().steps
    assert [s.forward_passes for s in steps] == [3, 3, 3, 3]
    assert [s.backward_passes for s in steps] == [3, 3, 3, 3]
    assert [s.optimizer_steps for s in steps] == [0, 2, 0, 2]
    assert [s.phases_us["optimizer"] > 0 for s in steps] == [False, True, False, True]
    kinds = sorted(o["kind"] for o in prof.run.rank().optimizers)
    assert kinds == ["Adam", "SGD"]
    assert prof.run.rank().module("body.0").calls_per_step == [3, 3, 3, 3]


def test_without_data_wrapper_the_data_phase_is_zero(tmp_path):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=2, skip_first=1, tensorboard=False) as prof:
        _train(model, opt, prof, 3)
    for s in prof.run.rank().steps:
        assert s.phases_us["data"] == 0.0
        assert s.duration_us == pytest.approx(sum(s.phases_us.values()))


def test_outputs_and_gradients_are_bit_identical_with_and_without_profiling(tmp_path):
    def run(profiled: bool):
        torch.manual_seed(0)
        model = MLP(width=16, depth=4)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        outs, grads = [], []
        prof = topoprof.profile(model, tmp_path / f"r{profiled}", steps=3, skip_first=1, tensorboard=False)
        ctx = prof if profiled else _Null()
        with ctx:
            for _ in range(6):
                x = torch.randn(8, 16, generator=gen)
                out = model(x)
                out.square().mean().backward()
                outs.append(out.detach().clone())
                grads.append([p.grad.clone() for p in model.parameters()])
                opt.step()
                opt.zero_grad()
                if profiled:
                    prof.step()
        return outs, grads

    outs_a, grads_a = run(False)
    outs_b, grads_b = run(True)
    for a, b in zip(outs_a, outs_b):
        assert torch.equal(a, b)
    for ga, gb in zip(grads_a, grads_b):
        for a, b in zip(ga, gb):
            assert torch.equal(a, b)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Boom(nn.Module):
    def __init__(self, exc: type[BaseException], at_call: int) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.calls = 0
        self.exc = exc
        self.at_call = at_call

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at_call:
            raise self.exc("boom")
        return self.lin(x)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_forward_removes_everything_and_saves_finished_steps(tmp_path, exc):
    inner = Boom(exc, at_call=5)
    model = nn.Sequential(nn.Linear(8, 8), inner)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(exc):
        with topoprof.profile(model, tmp_path / "r", steps=10, skip_first=1, tensorboard=False) as prof:
            _train(model, opt, prof, 10)
    assert _hooks_on(model) == 0
    run = topoprof.load(tmp_path / "r")
    assert len(run.rank().steps) == 3  # steps 1..3 finished; step 4 raised
    assert exc.__name__ in run.manifest.status
    # the model still works and is unprofiled
    inner.at_call = -1
    model(torch.randn(2, 8)).sum().backward()


def test_training_mode_flags_are_untouched(tmp_path):
    model = MLP()
    model.body.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=1, tensorboard=False) as prof:
        _train(model, opt, prof, 2)
    assert model.training and not model.body.training and model.head.training


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": 2.5}, "steps must be a positive integer"),
        ({"skip_first": -1}, "skip_first must be a non-negative integer"),
        ({"mode": "everything"}, "mode must be one of"),
        ({"clock": "sundial"}, "clock must be"),
        ({"tags": ["a"]}, "tags must be a dict"),
    ],
)
def test_bad_arguments_raise_a_clear_error(tmp_path, kwargs, message):
    with pytest.raises(ProfilerUsageError, match=message):
        topoprof.profile(MLP(), tmp_path / "r", **kwargs)


def test_model_must_be_a_module(tmp_path):
    with pytest.raises(ProfilerUsageError, match="needs a torch.nn.Module"):
        topoprof.profile(lambda x: x, tmp_path / "r")  # type: ignore[arg-type]


def test_profiles_do_not_nest_on_the_same_profiler(tmp_path):
    prof = topoprof.profile(MLP(), tmp_path / "r", steps=1, skip_first=0, tensorboard=False)
    with prof:
        with pytest.raises(ProfilerUsageError, match="already active"):
            prof.__enter__()


def test_fake_clock_profile_is_deterministic_across_runs(tmp_path):
    def once(path):
        clock = FakeClock()
        model = FakeTimedNet(clock)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        with topoprof.profile(model, path, steps=2, skip_first=1, clock=clock, tensorboard=False) as prof:
            for _ in range(3):
                model(torch.ones(2, 4)).sum().backward()
                opt.step()
                prof.step()
        return [(m.name, m.fwd_us, m.bwd_us) for m in prof.run.rank().modules]

    assert once(tmp_path / "a") == once(tmp_path / "b")


class FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward failed")


@pytest.mark.parametrize("manual", [True, False])
def test_a_caught_exception_in_backward_does_not_wedge_the_profile(tmp_path, manual):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=4, skip_first=1, tensorboard=False) as prof:
        for i in range(6):
            out = model(torch.randn(4, 8)).sum()
            if i == 2:
                try:
                    FailingBackward.apply(out).backward()
                except RuntimeError:
                    pass  # the user skips this batch
            else:
                out.backward()
            opt.step()
            opt.zero_grad()
            if manual:
                prof.step()
    steps = prof.run.rank().steps
    assert len(steps) == 4 and prof.run.manifest.status == "complete"
    assert all(s.forward_passes == 1 and s.optimizer_steps == 1 for s in steps)
    assert [s.backward_passes for s in steps] == [1, 0, 1, 1]  # step 2: the failed pass never finished
    assert all(prof.run.rank().module("head").fwd_us)


def test_a_caught_exception_in_optimizer_step_does_not_wedge_the_profile(tmp_path):
    class Flaky(torch.optim.SGD):
        calls = 0

        def step(self, closure=None):
            Flaky.calls += 1
            if Flaky.calls == 3:
                raise FloatingPointError("nan in the update")
            return super().step(closure)

    model = MLP()
    opt = Flaky(model.parameters(), lr=0.01)
    profiler = topoprof.profile(model, tmp_path / "r", steps=4, skip_first=1, tensorboard=False)

    @profiler
    def train():
        for _ in range(7):
            model(torch.randn(4, 8)).sum().backward()
            try:
                opt.step()
            except FloatingPointError:
                pass
            opt.zero_grad()

    train()
    steps = profiler.run.rank().steps
    assert len(steps) == 4 and profiler.run.manifest.status == "complete"


def test_manual_steps_for_loops_that_step_several_optimizers(tmp_path):
    # a GAN-like loop: the profiled model runs again after its optimizer stepped
    model, other = MLP(), MLP()
    opt_a = torch.optim.SGD(model.parameters(), lr=0.01)
    opt_b = torch.optim.SGD(other.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=3, skip_first=1, step_on="manual", tensorboard=False) as prof:
        for _ in range(4):
            x = torch.randn(4, 8)
            model(x).sum().backward()
            opt_a.step()
            opt_a.zero_grad()
            (model(x).detach().sum() + other(x).sum()).backward()  # the model runs again
            opt_b.step()
            opt_b.zero_grad()
            prof.step()
    steps = prof.run.rank().steps
    assert [s.index for s in steps] == [1, 2, 3]
    assert all(s.forward_passes == 2 and s.optimizer_steps == 2 for s in steps)


def test_step_on_must_be_known(tmp_path):
    with pytest.raises(ProfilerUsageError, match="step_on must be"):
        topoprof.profile(MLP(), tmp_path / "r", step_on="epoch")
