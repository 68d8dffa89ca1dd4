"""JSON files written atomically and read with errors that name the file.

Run files are JSON (never pickle) so a run captured on a GPU node can be read anywhere.
Writes go to a temporary file in the same directory and are renamed over the target, so a
reader (or an interrupted writer) never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from .errors import RunFormatError

__all__ = ["write_json_atomic", "read_json", "write_bytes_atomic"]


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask), without changing the
    umask (``os.umask`` can only be read by setting it, which races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, tmp_prefix: str | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The temporary file is hidden (``.<name>.<random>.tmp``, or ``tmp_prefix`` + random) in the
    same directory, so the rename never crosses file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = tmp_prefix if tmp_prefix is not None else f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600 files; runs are shared, like any file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Serialise ``obj`` (plain dicts, lists, numbers, strings) to ``path`` atomically."""
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    write_bytes_atomic(path, data + b"\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a truncated or corrupt file raises :class:`RunFormatError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise RunFormatError(f"{path}: is a directory, expected a JSON file") from None
    if not data.strip():
        raise RunFormatError(f"{path}: file is empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RunFormatError(f"{path}: not valid JSON (truncated or corrupt): {exc}") from None
