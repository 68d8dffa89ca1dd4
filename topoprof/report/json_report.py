"""JSON renderer: the full :class:`~topoprof.analysis.Analysis` as plain data.

Top-level keys, always present and in this order: ``format``, ``format_version``, ``run``,
``target``, ``findings`` (each ``id, severity, title, evidence, recommendation, saving,
layers``), ``breakdown``, ``layers``, ``roofline``, ``critical_path``, ``projection``,
``notes``, ``options``. Keys inside follow the dataclasses' field order. Non-finite numbers (NaN, infinity)
become ``null``; tuples become lists. Nothing is computed here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import orjson

from .._jsonio import write_bytes_atomic
from ..analysis import Analysis
from ..analysis.findings import Finding

__all__ = ["JSON_FORMAT", "JSON_FORMAT_VERSION", "plain", "analysis_to_dict", "dumps", "write_json"]

JSON_FORMAT = "topoprof.analysis"
JSON_FORMAT_VERSION = 1

#: Dataclass fields not written (back-references that repeat data already present).
_SKIPPED_FIELDS = frozenset({"cost"})


def plain(obj: Any) -> Any:
    """``obj`` as JSON-ready data: dataclasses to dicts (field order), tuples/sets to lists,
    mappings to dicts with string keys, non-finite floats to None."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in _SKIPPED_FIELDS}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [plain(v) for v in sorted(obj, key=str)]
    if hasattr(obj, "item"):  # numpy scalars
        return plain(obj.item())
    return str(obj)


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity,
        "title": f.title,
        "evidence": [{"name": e.name, "value": plain(e.value), "unit": e.unit} for e in f.evidence],
        "recommendation": {"text": f.recommendation.text, "code": f.recommendation.code},
        "saving": {"frac": plain(f.saving.frac), "how": f.saving.how},
        "layers": list(f.layers),
    }


def analysis_to_dict(analysis: Analysis) -> dict[str, Any]:
    """The analysis as a dict with stable keys (see the module doc)."""
    return {
        "format": JSON_FORMAT,
        "format_version": JSON_FORMAT_VERSION,
        "run": {"name": analysis.run_name, "path": analysis.run_path, "rank": analysis.rank,
                "ranks": list(analysis.ranks), "batch_size": analysis.batch_size},
        "target": {"name": analysis.target, "display_name": analysis.target_display},
        "findings": [_finding(f) for f in analysis.findings],
        "breakdown": plain(analysis.breakdown),
        "layers": plain(analysis.layers),
        "roofline": plain(analysis.roofline),
        "critical_path": plain(analysis.critical_path),
        "projection": plain(analysis.projection),
        "notes": list(analysis.notes),
        "options": plain(analysis.options),
    }


def dumps(analysis: Analysis) -> bytes:
    """The analysis as indented JSON bytes (UTF-8, trailing newline)."""
    return orjson.dumps(analysis_to_dict(analysis), option=orjson.OPT_INDENT_2) + b"\n"


def write_json(analysis: Analysis, path: str | os.PathLike[str]) -> None:
    """Write the analysis to ``path`` as JSON (atomically)."""
    write_bytes_atomic(path, dumps(analysis))
