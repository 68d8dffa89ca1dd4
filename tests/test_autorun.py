"""``topoprof run``: profiling unmodified scripts (topoprof.capture.autorun, topoprof.commands.run).

In-process tests cover the model-finding rule, the exactness of a profile started inside the
model's forward, and the CLI's one-line errors; subprocess tests run the example scripts of
``examples/scripts/`` through the real CLI (``topoprof`` and ``python -m topoprof``) and check
exit codes, output and the saved run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import topoprof
from topoprof.capture.autorun import ModelFinder, run_script
from topoprof.cli import main
from fixtures.models import FakeClock, FakeTimedNet

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "examples" / "scripts"
FAST = ["--steps", "3", "--skip-first", "1"]


def _cli(prog: str) -> list[str]:
    """The command line for ``prog``: the installed ``topoprof`` script or ``python -m topoprof``."""
    if prog == "topoprof":
        exe = shutil.which("topoprof")
        if exe is None:
            pytest.skip("the topoprof console script is not installed (pip install -e .)")
        return [exe]
    return [sys.executable, "-m", "topoprof"]


def _run_cli(prog: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NVTX_INJECTION64_PATH", None)
    return subprocess.run(_cli(prog) + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _global_hooks() -> tuple[int, int, int]:
    from torch.nn.modules import module as module_mod
    from torch.optim import optimizer as optimizer_mod

    return (
        len(module_mod._global_forward_pre_hooks),
        len(module_mod._global_forward_hooks),
        len(optimizer_mod._global_optimizer_pre_hooks),
    )


# --------------------------------------------------------------------------- the model rule
class Normalize(nn.Module):
    """A parameterless input module called before the model (an outermost module too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / (x.std() + 1e-5)


def test_model_is_the_first_outermost_module_trained_by_the_optimizer():
    torch.manual_seed(0)
    normalize = Normalize()
    backbone = nn.Linear(8, 8).requires_grad_(False)  # frozen, run under no_grad
    head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    found: list[tuple[nn.Module, tuple, bool]] = []
    finder = ModelFinder(lambda m, a, k: found.append((m, a, _global_hooks() == before)))
    before = _global_hooks()
    finder.install()
    try:
        for it in range(3):
            x = torch.randn(4, 8)
            with torch.no_grad():
                feats = backbone(normalize(x))
            loss = loss_fn(head(feats), torch.randint(0, 2, (4,)))
            loss.backward()
            opt.step()
            opt.zero_grad()
            if it == 0:
                assert finder.model is head and not found  # chosen at the step, started later
    finally:
        finder.remove()
    assert [f[0] for f in found] == [head]  # at the head's next forward, once
    assert found[0][1][0].shape == (4, 8)  # with the call's arguments
    assert found[0][2], "the global hooks must be gone when the profile starts"
    # Watched until the profile starts, at the head's forward in the second iteration.
    assert finder.outermost_calls == {"Normalize": 2, "Linear": 2, "Sequential": 2, "CrossEntropyLoss": 1}
    assert _global_hooks() == before


def test_with_two_trained_models_the_first_one_stepped_wins():
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)
    finder = ModelFinder(lambda m, a, k: None)
    finder.install()
    try:
        fake = gen(torch.randn(2, 4))
        disc(fake.detach()).mean().backward()  # the generator gets no gradient
        opt_d.step()
    finally:
        finder.remove()
    assert finder.model is disc


def test_no_optimizer_step_means_no_model():
    model = nn.Linear(4, 4)
    finder = ModelFinder(lambda m, a, k: None)
    finder.install()
    try:
        model(torch.randn(2, 4)).sum().backward()
    finally:
        finder.remove()
    assert finder.model is None and finder.outermost_calls == {"Linear": 1}


# --------------------------------------------------------------------------- start inside forward
def _fake_training(tmp_path: Path, name: str, start_inside: bool):
    clock = FakeClock()
    model = FakeTimedNet(clock)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    prof = topoprof.profile(model, tmp_path / name, steps=3, skip_first=0, capture_graph=False,
                            clock=clock, tensorboard=False)
    handle = None
    if start_inside:
        def start(module, args, kwargs):
            handle.remove()
            prof.start_in_root_forward(args, kwargs)

        handle = model.register_forward_pre_hook(start, with_kwargs=True)
    else:
        prof.__enter__()
    try:
        for _ in range(4):
            clock.advance(40)  # data
            model(torch.ones(2, 4, requires_grad=True)).sum().backward()
            opt.step()
            opt.zero_grad()
    finally:
        prof.__exit__(None, None, None)
    return prof.run.rank()


def test_profile_started_inside_the_first_forward_has_an_exact_step_zero(tmp_path):
    inside = _fake_training(tmp_path, "inside", start_inside=True)
    outside = _fake_training(tmp_path, "outside", start_inside=False)
    s0 = inside.steps[0]
    assert s0.index == 0 and s0.forward_passes == 1 and s0.backward_passes == 1 and s0.optimizer_steps == 1
    assert s0.phases_us["forward"] == pytest.approx(420.0)  # the planted forward time
    root = inside.module("")
    assert root.fwd_us[0] == 420.0 and root.bwd_us[0] == 4014.0
    # Started before the loop, the first step also holds the first batch's data time.
    outside_first = outside.steps[0]
    assert outside_first.duration_us - s0.duration_us == pytest.approx(40.0)
    assert [s.phases_us["forward"] for s in inside.steps] == [s.phases_us["forward"] for s in outside.steps]
    for m in inside.modules:
        other = outside.module(m.name)
        assert (m.calls_per_step, m.fwd_us, m.bwd_us) == (other.calls_per_step, other.fwd_us, other.bwd_us)


def test_graph_and_flops_captured_in_a_step_that_began_inside_forward(tmp_path):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    prof = topoprof.profile(model, tmp_path / "r", steps=2, skip_first=0, tensorboard=False)

    def start(module, args, kwargs):
        handle.remove()
        prof.start_in_root_forward(args, kwargs)

    handle = model.register_forward_pre_hook(start, with_kwargs=True)
    try:
        for _ in range(4):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
    finally:
        prof.__exit__(None, None, None)
    rank = prof.run.rank()
    assert rank.graph_step == 0
    assert rank.module("").in_shapes == [[4, 8]]
    assert rank.module("0").flops_fwd == 2 * 4 * 8 * 16
    assert ("input", "0") in {(e.src, e.dst) for e in rank.edges}


@pytest.mark.parametrize("skip_first", [1, 2, 3])
def test_flops_per_layer_with_steps_delimited_by_the_optimizer(tmp_path, skip_first):
    # The graph step then begins inside the root's forward pre-hook (at the step boundary);
    # the FLOP counter must still see the root call, else every submodule's FLOPs are lost.
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=skip_first, tensorboard=False):
        for _ in range(skip_first + 2):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
    rank = topoprof.load(tmp_path / "r").rank()
    assert rank.module("0").flops_fwd == 2 * 4 * 8 * 16
    assert rank.module("2").flops_fwd == 2 * 4 * 16 * 2


# --------------------------------------------------------------------------- in-process CLI
def test_inference_only_script_exits_2_with_one_line_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), str(SCRIPTS / "infer_only.py")])
    captured = capsys.readouterr()
    assert code == 2
    assert "inference done" in captured.out  # the script ran to its end
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("topoprof: error: no training step found")
    assert "Sequential x5" in err[0] and "optimizer.step()" in err[0]
    assert not out.exists()


def test_run_script_in_process_restores_argv_path_and_hooks(tmp_path):
    argv, path, hooks = sys.argv[:], sys.path[:], _global_hooks()
    result = run_script(str(SCRIPTS / "train_plain.py"), ["--iters", "5"], run_dir=tmp_path / "r",
                        steps=2, skip_first=1, tensorboard=False)
    assert result.exit_code == 0 and result.error is None
    assert result.model_kind == "MLP"
    assert result.run.manifest.status == "complete"
    assert (sys.argv, sys.path, _global_hooks()) == (argv, path, hooks)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run"], "give a script"),
        (["run", "-m"], "-m needs a module name"),
        (["run", "no/such/script.py"], "script not found: no/such/script.py"),
        (["run", "-m", "no_such_module_xyz"], "No module named no_such_module_xyz"),
        (["run", "--mode", "nope", str(SCRIPTS / "train_plain.py")], "mode must be one of layers"),
        (["run", "--steps", "0", str(SCRIPTS / "train_plain.py")], "expected a positive integer"),
        (["run", "--target", "dgx-z9", str(SCRIPTS / "train_plain.py")], "unknown hardware target"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "trained" not in captured.out  # the script never ran


# --------------------------------------------------------------------------- real CLI processes
def test_plain_loop_with_the_topoprof_command(tmp_path):
    out = tmp_path / "plain"
    p = _run_cli("topoprof", ["run", *FAST, "--out", str(out), str(SCRIPTS / "train_plain.py"), "--iters", "8"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "trained 8 iterations" in p.stdout
    assert "Step breakdown by phase" in p.stdout and f"run saved in {out}" in p.stdout
    run = topoprof.load(out)
    assert run.manifest.status == "complete"
    rank = run.rank()
    assert [s.index for s in rank.steps] == [1, 2, 3]
    assert all((s.forward_passes, s.backward_passes, s.optimizer_steps) == (1, 1, 1) for s in rank.steps)
    assert rank.module("").kind == "MLP"  # not CrossEntropyLoss, the other outermost module
    assert rank.module("fc1").flops_fwd == 2 * 8 * 16 * 32
    assert run.manifest.command[0].endswith("train_plain.py")  # the script's own argv


def test_gradient_accumulation_with_python_dash_m_topoprof(tmp_path):
    out = tmp_path / "accum"
    p = _run_cli("python", ["run", *FAST, "--out", str(out), str(SCRIPTS / "train_accumulate.py"), "8"], tmp_path)
    assert p.returncode == 0, p.stderr
    steps = topoprof.load(out).rank().steps
    assert len(steps) == 3
    assert all((s.forward_passes, s.backward_passes, s.optimizer_steps) == (2, 2, 1) for s in steps)


def test_script_sees_its_own_argv_cwd_and_path_and_its_exit_code_propagates(tmp_path, monkeypatch, capsys):
    # In process, through the CLI's main(), which `topoprof` turns into the process exit code.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "args"
    code = main(["run", *FAST, "--out", str(out), str(SCRIPTS / "train_args.py"),
                 "--iters", "6", "--steps", "7", "--expect-cwd", str(tmp_path), "--exit-code", "3", "a", "b"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "args: iters=6 steps=7 rest=['a', 'b']" in captured.out  # options after the script are its own
    run = topoprof.load(out)
    assert run.manifest.status == "complete"  # sys.exit is how scripts end, not a failure
    assert len(run.rank().steps) == 3


def test_script_that_raises_exits_1_with_traceback_and_saves_finished_steps(tmp_path):
    out = tmp_path / "fails"
    p = _run_cli(
        "python",
        ["run", "--steps", "5", "--skip-first", "0", "--out", str(out), str(SCRIPTS / "train_fails.py"), "--fail-at", "4"],
        tmp_path,
    )
    assert p.returncode == 1
    err = p.stderr
    assert err.startswith("Traceback (most recent call last):\n")
    first_frame = err.splitlines()[1]
    assert "train_fails.py" in first_frame and "runpy" not in err  # as python prints it
    assert err.rstrip().endswith("DivergedError: non-finite activations: the training diverged")
    run = topoprof.load(out)
    assert run.manifest.status == "failed: DivergedError after 2 profiled steps"
    assert [s.index for s in run.rank().steps] == [1, 2]  # step 0 captured the graph; step 3 failed
    assert f"run saved in {out}" in p.stdout


def test_module_form_runs_like_python_dash_m(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(SCRIPTS)  # python -m finds modules in the working directory
    out = tmp_path / "mod"
    code = main(["run", *FAST, "--out", str(out), "-m", "train_plain", "--iters", "6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "trained 6 iterations" in captured.out
    run = topoprof.load(out)
    assert run.manifest.status == "complete" and run.rank().module("").kind == "MLP"
    assert run.manifest.command[0] == str(SCRIPTS / "train_plain.py")  # argv[0] as python -m sets it
    assert "train_plain" not in sys.modules
