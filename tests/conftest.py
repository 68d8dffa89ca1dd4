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
