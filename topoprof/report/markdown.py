"""Markdown report: the report document (:func:`topoprof.report.html.report_document`) as
GitHub-flavoured Markdown, for pull requests, issues and notebooks.

Text from the run (module names, tags, titles) is escaped for Markdown tables and inline text,
so a module called ``a|b`` or ``*x*`` cannot break a table or change the emphasis; code
snippets go in fenced blocks whose fence is longer than any backtick run inside them. HTML in
names is escaped too (``<`` -> ``&lt;``): many Markdown viewers render raw HTML.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from ..run import PHASES
from .html import fmt_bytes, fmt_pct, fmt_rate, fmt_ratio, fmt_si, fmt_signed_us, fmt_us, fmt_value

__all__ = ["render_markdown", "render_comparison_markdown", "md_escape", "TOP_LAYERS"]

#: Layers listed in the Markdown report (by self time); the HTML report has them all.
TOP_LAYERS = 25
#: Layer deltas listed in the Markdown comparison.
TOP_LAYER_DELTAS = 25

_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")
_MD_LINE_START = re.compile(r"^(?:[#+\-=!]|\d+(?=[.)]))")


def md_escape(text: Any, *, line: bool = False) -> str:
    """``text`` as literal Markdown: HTML-escaped (``<`` -> ``&lt;``), inline markup characters
    backslash-escaped, newlines turned into spaces (table cells are one line); with ``line``
    (text that starts a line) a leading block marker (``#``, ``-``, ``1.``) is neutralised too."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_INLINE.sub(r"\\\1", s).replace("\r", " ").replace("\n", " ")
    if not line:
        return s
    return _MD_LINE_START.sub(lambda m: m.group(0) + "\\" if m.group(0)[0].isdigit() else "\\" + m.group(0), s)


def _name(n: str) -> str:
    return "(root)" if n == "" else n


def _code_span(text: str) -> str:
    """Inline code that survives backticks inside (and HTML: code spans are literal)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace(chr(10), ' ')}{pad}{fence}"


def _fence(code: str, lang: str = "python") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code.rstrip()}\n{fence}"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one letter per column: ``l`` or ``r`` (default ``l``)."""
    out = ["| " + " | ".join(head) + " |"]
    out.append("|" + "|".join("---:" if (align[i:i + 1] == "r") else "---" for i in range(len(head))) + "|")
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return out


def render_markdown(d: Mapping[str, Any]) -> str:
    """The Markdown text of a report document."""
    s, r, an = d["summary"], d["run"], d["analysis"]
    out: list[str] = [f"# topoprof report: {md_escape(s['model'])} (run {md_escape(r['name'])})", ""]
    if r["status"] != "complete":
        out += [f"> **Run status:** {md_escape(r['status'])}", ""]
    if r["missing_ranks"]:
        out += [f"> **Ranks without data:** {', '.join(str(x) for x in r['missing_ranks'])}", ""]
    thr = (f"{fmt_rate(s['samples_per_s'], ' samples/s')} ({fmt_rate(s['steps_per_s'], ' steps/s')}, "
           f"batch {s['batch_size']})" if s["samples_per_s"] is not None else fmt_rate(s["steps_per_s"], " steps/s"))
    out += ["## Summary", ""]
    out += _table(["", ""], [
        ["model", f"{md_escape(s['model'])} ({s['layers']} layers, {s['modules']} modules)"],
        ["parameters", f"{fmt_si(s['params'])} ({s['params']:,})"],
        ["FLOPs per step", fmt_si(s["flops_per_step"], "FLOP")],
        ["step time (median)", f"{fmt_us(s['step_us'])} (min {fmt_us(s['step_min_us'])}, "
                               f"max {fmt_us(s['step_max_us'])}, {s['steps']} steps)"],
        ["throughput", thr],
        ["achieved", fmt_si(s["achieved_flop_per_s"], "FLOP/s")],
        ["device", md_escape(r["device_text"])],
        ["mode, status", f"{md_escape(r['mode'])}, {md_escape(r['status'])}"],
        ["ranks", f"{len(d['ranks'])} of {r['world_size']}"],
        ["versions", md_escape(r["versions_text"])],
        ["target", md_escape(an["target_display"])],
        *([["tags", ", ".join(f"{md_escape(k)}={md_escape(v)}" for k, v in sorted(r["tags"].items()))]]
          if r["tags"] else []),
    ])
    out += ["", "## Step breakdown by phase", ""]
    out += _table(["phase", "median", "min", "max", "share"], (
        [p["phase"], fmt_us(p["median_us"]), fmt_us(p["min_us"]), fmt_us(p["max_us"]), fmt_pct(p["share"])]
        for p in d["phases"]), "lrrrr")
    out += ["", f"## Findings (ranked by estimated saving on {md_escape(an['target_display'])})", ""]
    if not d["findings"]:
        out += ["No rule fired.", ""]
    for i, f in enumerate(d["findings"], 1):
        saving = (f"saves about {fmt_pct(f['saving']['frac'], 0)} of the step"
                  if f["saving"]["frac"] is not None else "no estimate")
        out += [f"### {i}. {md_escape(f['title'])}", "",
                f"**{f['severity']}** · {saving} · rule {_code_span(f['id'])}", ""]
        if f["evidence"]:
            out += _table(["evidence", "value"], (
                [md_escape(e["name"]), md_escape(fmt_value(e["value"], e["unit"]))] for e in f["evidence"]), "lr")
            out.append("")
        out += [md_escape(f["recommendation"]["text"], line=True), ""]
        if f["recommendation"]["code"]:
            out += [_fence(f["recommendation"]["code"]), ""]
        if f["layers"]:
            shown = ", ".join(_code_span(_name(x)) for x in f["layers"][:12])
            more = f" and {len(f['layers']) - 12} more" if len(f["layers"]) > 12 else ""
            out += [f"Layers: {shown}{more}", ""]
        out += [f"*Saving: {md_escape(f['saving']['how'])}*", ""]
    top = sorted((x for x in d["layers"] if (x["self_us"] or 0) > 0), key=lambda x: -(x["self_us"] or 0))[:TOP_LAYERS]
    out += [f"## Top {len(top)} layers by self time", ""]
    out += _table(["layer", "kind", "fwd", "bwd", "self", "% step", "FLOPs", "FLOP/s", "FLOP/B", "bound"], (
        [_code_span(_name(x["name"])), md_escape(x["kind"]), fmt_us(x["fwd_us"]), fmt_us(x["bwd_us"]),
         fmt_us(x["self_us"]), fmt_pct(x["share"]), fmt_si(x["flops"]), fmt_si(x["achieved_flop_per_s"]),
         f"{x['roofline']['intensity_flop_per_byte']:.3g}" if x["roofline"] and
         x["roofline"]["intensity_flop_per_byte"] is not None else "–",
         x["roofline"]["bound"] if x["roofline"] else "–"] for x in top), "llrrrrrrrl")
    cp = d["graph"]["critical_path"]
    out += ["", f"Critical path: {fmt_us(cp['time_us'])} ({fmt_pct(cp['share'])} of all layer self time) through "
            f"{len(cp['nodes'])} nodes.", ""]
    out += ["## DGX projection", "", "Projected step time, scaling efficiency and bound, data-parallel with the "
            "profiled batch per GPU.", ""]
    counts = [1, 2, 4, 8, 16]
    rows = []
    for sys in d["projection"]["systems"]:
        cells = [md_escape(sys["display"])]
        for n in counts:
            row = next((x for x in sys["rows"] if x["nodes"] == 1 and x["gpus"] == n), None)
            cells.append(f"{fmt_us(row['step_us'])} ({fmt_pct(row['efficiency_frac'], 0)}, {row['bound']})"
                         if row else "–")
        row = next((x for x in sys["rows"] if x["nodes"] == 2), None)
        cells.append(f"{fmt_us(row['step_us'])} ({fmt_pct(row['efficiency_frac'], 0)}, {row['bound']})" if row else "–")
        cells.append(fmt_pct(sys["memory"]["used_frac"], 0))
        rows.append(cells)
    out += _table(["system", *(f"{n} GPU" + ("s" if n > 1 else "") for n in counts), "2 nodes", "memory"], rows,
                  "lrrrrrrr")
    t = d["projection"]["target"]
    out += ["", f"On {md_escape(t['display'])}, one GPU by precision: " + ", ".join(
        f"{p['precision']} {fmt_us(p['step_us'])} ({p['bound']})" for p in t["by_precision"]) +
        f". Memory: {fmt_bytes(t['memory']['peak_bytes'])} of {fmt_bytes(t['memory']['capacity_bytes'])}.", ""]
    if len(d["ranks"]) > 1 or r["missing_ranks"]:
        out += ["## Ranks", ""]
        out += _table(["rank", "host", "status", "step", *PHASES, "comm", "exposed"], (
            [str(k["rank"]), md_escape(k["host"]), md_escape(k["status"]), fmt_us(k["step_us"]),
             *(fmt_us((k["phases"] or {}).get(p)) for p in PHASES), fmt_us(k["comm_us"]),
             fmt_us(k["comm_exposed_us"])] for k in d["ranks"]), "lllrrrrrrrr")
        for m in r["missing_ranks"]:
            out.append(f"\nRank {m}: no data (died or never finished).")
        out.append("")
    if an["notes"]:
        out += ["## Notes", ""] + [f"- {md_escape(n)}" for n in an["notes"]] + [""]
    out += [f"*Made by {md_escape(d['generator'])}.*", ""]
    return "\n".join(out)


def render_comparison_markdown(d: Mapping[str, Any]) -> str:
    """The Markdown text of a comparison document."""
    s = d["summary"]
    a, b = d["a"], d["b"]
    out = [f"# topoprof comparison: {md_escape(a['name'])} (A) vs {md_escape(b['name'])} (B)", ""]
    out += [f"> {md_escape(n)}" for n in d["notes"]] + ([""] if d["notes"] else [])
    out += _table(["", "A", "B", "B − A", "B / A"], [
        ["median step", fmt_us(s["step_us"]["a"]), fmt_us(s["step_us"]["b"]), fmt_signed_us(s["step_us"]["diff"]),
         fmt_ratio(s["step_us"]["ratio"])],
        *([["samples/s", fmt_rate(s["samples_per_s"]["a"], ""), fmt_rate(s["samples_per_s"]["b"], ""), "",
            fmt_ratio(s["samples_per_s"]["ratio"])]] if s["samples_per_s"]["a"] and s["samples_per_s"]["b"] else []),
        *([[p["phase"], fmt_us(p["us"]["a"]), fmt_us(p["us"]["b"]), fmt_signed_us(p["us"]["diff"]),
            fmt_ratio(p["us"]["ratio"])] for p in d["phases"]]),
    ], "lrrrr")
    out += ["", f"**Speed-up (A step / B step): {fmt_ratio(s['speedup'])}** · throughput B / A: "
            f"{fmt_ratio(s['throughput_ratio'])}", ""]
    if d["findings"] is not None:
        out += ["## Findings", ""]
        if not d["findings"]:
            out += ["No rule fired in either run.", ""]
        else:
            out += _table(["status", "rule", "finding", "severity A → B", "saving A → B"], (
                [f["status"], _code_span(f["id"]), md_escape(f["title"]),
                 f"{f['severity_a'] or '–'} → {f['severity_b'] or '–'}",
                 f"{fmt_pct(f['saving_frac']['a'], 0)} → {fmt_pct(f['saving_frac']['b'], 0)}"] for f in d["findings"]),
                "lllll")
            out.append("")
    both = [x for x in d["layers"] if x["status"] == "both"][:TOP_LAYER_DELTAS]
    out += [f"## Layers: the {len(both)} largest changes of self time", ""]
    out += _table(["layer", "kind", "self A", "self B", "B − A", "B / A"], (
        [_code_span(_name(x["name"])), md_escape(x["kind"]), fmt_us(x["self_us"]["a"]), fmt_us(x["self_us"]["b"]),
         fmt_signed_us(x["self_us"]["diff"]), fmt_ratio(x["self_us"]["ratio"])] for x in both), "llrrrr")
    for side, key in (("A", "only_in_a"), ("B", "only_in_b")):
        if d[key]:
            out += ["", f"Only in {side} ({len(d[key])}): " + ", ".join(_code_span(_name(n)) for n in d[key][:50])
                    + (" …" if len(d[key]) > 50 else "")]
    out += ["", f"*Made by {md_escape(d['generator'])}.*", ""]
    return "\n".join(out)
