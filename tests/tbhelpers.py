"""Test helpers for the TensorBoard renderer: a real TensorBoard server, its HTTP API, event
files read back, and headless Chromium screenshots.

The server runs as ``python -m tensorboard.main`` in a subprocess on a free local port; callers
must call :meth:`TensorBoardServer.stop` (a fixture finaliser does), which terminates it and
kills it if it does not exit in time.
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = [
    "SERVER_START_TIMEOUT_S",
    "DATA_LOAD_TIMEOUT_S",
    "TensorBoardServer",
    "free_port",
    "wait_until",
    "read_events",
    "read_scalars",
    "read_text",
    "chromium_path",
    "chromium_screenshot",
]

#: Bound on TensorBoard answering HTTP after start (it takes about 3 s on a laptop).
SERVER_START_TIMEOUT_S = 60.0
#: Bound on TensorBoard having loaded the logdir's runs after it answers.
DATA_LOAD_TIMEOUT_S = 30.0
#: Bound on one HTTP request to the local server.
REQUEST_TIMEOUT_S = 10.0
#: Bound on one Chromium screenshot (its virtual time budget is 15 s of page time).
SCREENSHOT_TIMEOUT_S = 90.0
#: How often readiness is polled.
POLL_INTERVAL_S = 0.2
#: How long a terminated server may take to exit before it is killed.
STOP_TIMEOUT_S = 10.0

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Call ``probe`` until it returns something other than None/False; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except (OSError, ValueError) as exc:  # not up yet, or a half-loaded answer
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error!r})")
        time.sleep(POLL_INTERVAL_S)


class TensorBoardServer:
    """A TensorBoard process serving ``logdir`` on 127.0.0.1, with JSON helpers for its API."""

    def __init__(self, logdir: Path, log_path: Path) -> None:
        self.logdir = Path(logdir)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> "TensorBoardServer":
        """Start the server and wait until it answers ``/data/runs``."""
        command = [
            sys.executable, "-m", "tensorboard.main",
            "--logdir", str(self.logdir),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--load_fast=false",
        ]  # fmt: skip
        self._log_file = open(self.log_path, "wb")
        self._process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT)

        def answers() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"tensorboard exited with {self._process.returncode}:\n{self.log()}")
            self.get("/data/runs")
            return True

        try:
            wait_until(answers, timeout_s, f"tensorboard on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in time); safe to call twice."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **params: str) -> Any:
        """GET ``path`` with query ``params``; the decoded JSON answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._request(urllib.request.Request(self.url + path + query))

    def post(self, path: str, body: Any) -> Any:
        """POST ``body`` as JSON to ``path``; the decoded JSON answer."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return self._request(request)

    def wait_for_runs(self, runs: set[str], timeout_s: float = DATA_LOAD_TIMEOUT_S) -> list[str]:
        """Wait until ``/data/runs`` lists ``runs`` and their scalar and text tags are loaded."""

        def loaded() -> list[str] | None:
            listed = self.get("/data/runs")
            scalar_tags = self.get("/data/plugin/scalars/tags")
            text_runs = self.get("/data/plugin/text/tags")
            if runs <= set(listed) and runs <= set(scalar_tags) and runs <= set(text_runs):
                return list(listed)
            return None

        return wait_until(loaded, timeout_s, f"tensorboard to load runs {sorted(runs)}")

    @staticmethod
    def _request(request: urllib.request.Request) -> Any:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
            data = answer.read()
            if answer.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
        return json.loads(data)


def read_events(path: Path) -> list[Any]:
    """All ``Event`` protos of one event file, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return list(EventFileLoader(str(path)).Load())


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one event file written as float64 tensors: tag -> [(step, value)]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(path):
        for value in event.summary.value:
            if value.tensor.double_val:
                out.setdefault(value.tag, []).append((event.step, value.tensor.double_val[0]))
    return out


def read_text(path: Path, tag: str) -> str:
    """The Markdown source of text summary ``tag`` in one event file."""
    for event in read_events(path):
        for value in event.summary.value:
            if value.tag == tag:
                return value.tensor.string_val[0].decode("utf-8")
    raise KeyError(f"{path}: no text summary {tag!r}")


def chromium_path() -> str | None:
    """The system Chromium (or Chrome) executable, or None where none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_screenshot(
    url: str, out: Path, window: tuple[int, int] = (1400, 1000), timeout_s: float = SCREENSHOT_TIMEOUT_S
) -> Path:
    """Screenshot ``url`` with headless Chromium into the PNG ``out``.

    Chromium runs with a throwaway profile and no background networking, so it touches nothing
    but ``url``; the virtual time budget lets the page's scripts and charts settle.
    """
    browser = chromium_path()
    if browser is None:
        raise FileNotFoundError("no chromium executable on PATH")
    with tempfile.TemporaryDirectory(prefix="topoprof-chromium-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={out}",
            f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=15000", url,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, timeout=timeout_s)
    if not out.exists():
        raise RuntimeError(
            f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return out
