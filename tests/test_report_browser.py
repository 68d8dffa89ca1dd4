"""The HTML reports in a real browser: headless Chromium (the system one, driven by Python
Playwright; no browser is ever downloaded).

Each page is opened from a file:// URL while every request is recorded: the only one allowed is
the report itself. Console errors, page errors and JavaScript dialogs fail the test (a dialog is
what the injected ``alert(...)`` strings would open). Screenshots go to the test's tmp dir and
are copied to /tmp/report_*.png for a person to look at.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

import topoprof
from test_report_html import EVIL_CONTAINER, EVIL_MODULE, EVIL_RUN, EVIL_TAG, hostile_run, synthetic_run

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

_SHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing (pip install -e '.[test]')")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()


class Page:
    """A report open in a fresh browser context, with what it asked for and complained about."""

    def __init__(self, browser, path: Path):
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

        def on_dialog(d):
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def check_clean(self) -> None:
        assert self.dialogs == [], "a dialog opened: injected script ran"
        assert self.errors == []
        assert self.requests == [self.url], "the report requested something besides itself"

    def shot(self, tmp_path: Path, name: str, full_page: bool = False) -> Path:
        out = tmp_path / f"report_{name}.png"
        self.page.screenshot(path=str(out), full_page=full_page)
        shutil.copy(out, _SHOTS / out.name)
        return out

    def wait_until(self, js: str, arg=None, timeout_s: float = 5.0) -> None:
        """Poll ``js`` (a function expression) until it returns true. Not wait_for_function: its
        string predicates need eval, which the report's Content-Security-Policy forbids."""
        deadline = time.monotonic() + timeout_s
        while not self.page.evaluate(js, arg):
            assert time.monotonic() < deadline, f"timed out waiting for {js}"
            time.sleep(0.02)

    def first_rows(self, n: int = 3) -> list[str]:
        return self.page.eval_on_selector_all(
            "#layer-table tbody tr", f"rows => rows.slice(0, {n}).map(r => r.getAttribute('data-name'))")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def resnet_report(tmp_path_factory):
    """A real profile of the example CNN (tiny: batch 2, two steps), reported as HTML."""
    from topoprof.examples.resnet import train

    tmp = tmp_path_factory.mktemp("resnet")
    run = train(str(tmp / "run"), steps=2, skip_first=1, batch_size=2)
    return topoprof.write_report(run, tmp / "resnet.html"), topoprof.analyze(run)


def test_report_opens_offline_without_errors_and_its_table_sorts(browser, resnet_report, tmp_path):
    path, analysis = resnet_report
    p = Page(browser, path)
    try:
        page = p.page
        assert page.title().startswith("topoprof · ResNetSmall")
        assert page.locator("#findings article.finding").count() == len(analysis.findings)
        shown = page.locator("#layer-table tbody tr").count()
        assert shown == len(analysis.layers)
        # sort by self time: largest first, then smallest first
        by_self = sorted((s for s in analysis.layers), key=lambda s: s.self_us)
        page.click("#layer-table th[data-key=self_us]")
        assert p.first_rows(1) == [by_self[-1].name]
        assert page.get_attribute("#layer-table th[data-key=self_us]", "aria-sort") == "descending"
        page.click("#layer-table th[data-key=self_us]")
        assert p.first_rows(1) == [by_self[0].name]
        page.click("#layer-table th[data-key=name]")  # text: A to Z first; the root reads "(root)"
        assert p.first_rows(3) == ["", "fc", "layer1"]
        # filter
        page.fill("#layer-filter", "conv1")  # matches names and kinds (Conv2d): only names here
        p.wait_until("n => document.querySelectorAll('#layer-table tbody tr').length < n", shown)
        names = page.eval_on_selector_all("#layer-table tbody tr", "rows => rows.map(r => r.getAttribute('data-name'))")
        assert names and all("conv1" in n for n in names)
        page.fill("#layer-filter", "")
        # the snippet's copy button
        button = page.locator("#findings .code .copy").first
        button.click()
        p.wait_until("() => document.querySelector('#findings .code .copy').textContent === 'Copied'")
        # the graph is drawn, with time as colour
        assert int(page.get_attribute("#graph-box", "data-nodes")) == sum(s.leaf for s in analysis.layers) + 2
        page.evaluate("window.scrollTo(0, 0)")
        p.shot(tmp_path, "resnet")
        page.locator("#graph").scroll_into_view_if_needed()
        p.shot(tmp_path, "resnet_graph")
        page.locator("#roofline").scroll_into_view_if_needed()
        p.shot(tmp_path, "resnet_roofline")
        page.locator("#projection").scroll_into_view_if_needed()
        p.shot(tmp_path, "resnet_projection")
        p.check_clean()
    finally:
        p.close()


def test_hostile_names_and_tags_show_as_text_and_nothing_runs(browser, tmp_path):
    run = hostile_run()
    path = topoprof.write_report(topoprof.analyze(run), tmp_path / "hostile.html", run=run)
    p = Page(browser, path)
    try:
        page = p.page
        assert EVIL_RUN in page.title()
        assert EVIL_TAG in page.inner_text("#summary")
        cells = page.eval_on_selector_all("#layer-table td.name", "tds => tds.map(t => t.textContent)")
        assert EVIL_MODULE in cells and EVIL_CONTAINER in cells
        page.click("#graph-expand")
        texts = page.eval_on_selector_all("#graph-box svg text", "ts => ts.map(t => t.textContent)")
        assert any(t.startswith("<script>alert(1)") for t in texts)
        # interact everywhere a string is handled: sort, filter, fold, tooltips
        page.click("#layer-table th[data-key=name]")
        page.fill("#layer-filter", "<script>")
        p.wait_until("() => document.querySelectorAll('#layer-table tbody tr').length === 1")
        page.click("#graph-collapse")
        page.click("#graph-expand")
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
        assert page.evaluate("document.querySelectorAll('[onload], [onerror]').length") == 0
        assert page.evaluate("document.querySelectorAll('script').length") == 3
        p.shot(tmp_path, "hostile")
        p.check_clean()
    finally:
        p.close()


def test_graph_of_1000_layers_folds_unfolds_and_the_table_pages(browser, tmp_path):
    run = synthetic_run(1000)
    analysis = topoprof.analyze(run)
    path = topoprof.write_report(analysis, tmp_path / "big.html", run=run)
    leaves = sum(m.leaf for m in run.rank(0).modules)
    p = Page(browser, path)
    try:
        page = p.page
        first = int(page.get_attribute("#graph-box", "data-nodes"))
        assert 10 <= first <= 160  # folded to stay readable
        page.locator("#graph").scroll_into_view_if_needed()
        p.shot(tmp_path, "1000_graph")
        page.click("#graph-expand")
        assert int(page.get_attribute("#graph-box", "data-nodes")) == leaves + 2
        width = float(page.evaluate("document.querySelector('#graph-box svg').getAttribute('width')"))
        assert width < 1400  # 91 identical blocks stay in one column: no sideways drift
        page.evaluate("document.getElementById('graph-box').scrollTop = 3000")
        p.shot(tmp_path, "1000_graph_unfolded")
        page.locator("#graph-box .group .glabel").first.click()  # fold one group
        assert int(page.get_attribute("#graph-box", "data-nodes")) < leaves + 2
        page.select_option("#graph-depth", "2")
        assert int(page.get_attribute("#graph-box", "data-nodes")) <= first
        # the table draws 300 rows until asked for all; sorting sees every row
        assert page.locator("#layer-table tbody tr").count() == 300
        page.click("#layer-table th[data-key=self_us]")
        assert p.first_rows(1) == [max(analysis.layers, key=lambda s: s.self_us).name]
        page.click("button.more")
        assert page.locator("#layer-table tbody tr").count() == len(run.rank(0).modules)
        p.check_clean()
    finally:
        p.close()


def test_a_run_without_edges_lists_its_layers_one_per_row(browser, tmp_path):
    run = synthetic_run(20)
    run.rank(0).edges = []  # as profiled with capture_graph=False
    path = topoprof.write_report(topoprof.analyze(run), tmp_path / "noedges.html", run=run)
    p = Page(browser, path)
    try:
        nodes = int(p.page.get_attribute("#graph-box", "data-nodes"))
        assert nodes == sum(m.leaf for m in run.rank(0).modules) + 2
        w, h = p.page.evaluate("(() => { const s = document.querySelector('#graph-box svg'); "
                               "return [+s.getAttribute('width'), +s.getAttribute('height')]; })()")
        assert h > 5 * w  # a column, not a row of 27 nodes
        assert "no tensor edges" in p.page.inner_text("#graph")
        p.check_clean()
    finally:
        p.close()


def test_per_rank_view_of_a_multi_rank_run(browser, tmp_path):
    run = synthetic_run(40, ranks=4)
    del run.ranks[2]
    path = topoprof.write_report(topoprof.analyze(run), tmp_path / "ranks.html", run=run)
    p = Page(browser, path)
    try:
        page = p.page
        assert page.locator("#ranks svg.rankbars text", has_text="rank").count() == 3
        assert "no data" in page.inner_text("#ranks")
        page.locator("#ranks").scroll_into_view_if_needed()
        p.shot(tmp_path, "ranks")
        p.check_clean()
    finally:
        p.close()


def test_comparison_opens_cleanly_and_sorts(browser, tmp_path):
    a = synthetic_run(40, name="baseline")
    b = synthetic_run(60, name="wider", seed=3)
    c = topoprof.compare(a, b)
    path = topoprof.write_report(c, tmp_path / "diff.html")
    p = Page(browser, path)
    try:
        page = p.page
        assert page.title() == "topoprof · baseline vs wider"
        assert "speed-up" in page.inner_text("#summary").lower()
        page.click("#layer-table th[data-key=self_diff]")  # largest increase first
        first = p.first_rows(1)[0]
        both = [d for d in c.layers if d.self_us.diff is not None]
        assert first == max(both, key=lambda d: d.self_us.diff).name
        page.select_option("#layer-status", "only_b")
        names = page.eval_on_selector_all("#layer-table tbody tr", "rows => rows.map(r => r.getAttribute('data-name'))")
        assert sorted(names) == sorted(c.only_in_b)
        p.shot(tmp_path, "compare")
        page.select_option("#layer-status", "")
        page.locator("#layers").scroll_into_view_if_needed()
        p.shot(tmp_path, "compare_layers")
        p.check_clean()
    finally:
        p.close()
