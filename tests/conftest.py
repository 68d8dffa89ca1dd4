"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def nvtx_recorder_lib(tmp_path_factory):
    """The NVTX injection recorder (tests/nvtx_recorder/recorder.c), built once per session.

    Skips the test when gcc or the NVTX v3 headers (the nvidia-nvtx wheel) are absent.
    """
    import nvtxrec

    try:
        return nvtxrec.build_recorder(tmp_path_factory.mktemp("nvtx_recorder"))
    except nvtxrec.RecorderUnavailable as exc:
        pytest.skip(f"NVTX recorder unavailable: {exc}")


def _global_hook_counts():
    import torch
    from torch.nn.modules import module as module_mod
    from torch.optim import optimizer as optimizer_mod

    counts = {
        "global forward pre-hooks": len(module_mod._global_forward_pre_hooks),
        "global forward hooks": len(module_mod._global_forward_hooks),
        "global backward hooks": len(module_mod._global_backward_hooks),
        "optimizer step pre-hooks": len(optimizer_mod._global_optimizer_pre_hooks),
        "optimizer step post-hooks": len(optimizer_mod._global_optimizer_post_hooks),
        "torch function modes": len(torch.overrides._get_current_function_mode_stack()),
    }
    return counts


@pytest.fixture(autouse=True)
def no_profiler_state_left_behind():
    """Fail any test that leaves global hooks or torch function modes installed (pyinstrument's
    lesson: profiler state must never leak out of a profile)."""
    import sys

    if "torch" not in sys.modules:
        yield
        return
    before = _global_hook_counts()
    yield
    after = _global_hook_counts()
    assert after == before, f"global state left behind: before={before} after={after}"
