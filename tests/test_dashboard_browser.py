"""The Benchmarks dashboard and the confusion atlas in a real browser (Debian's chromium via Playwright).

(b) a fresh start (the app's own flags, no --results): the Benchmarks tab shows the launch evaluation's
progress, then base and tuned rows without any click; every value column and the figures' titles are whole at
1280x900, the legend speaks of "Base CLIP" and "CultureCLIP", and a 390x844 phone has no horizontal page scroll.
(c) the atlas: values rounded, figure titles not covered by labels or buttons, the world view drawn offline.

Screenshots go to $CULTURECLIP_SCREENSHOTS or the test's tmp folder (docs/world/ holds the README's)."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser)"),
]

# every element's box that overlaps a figure title (labels, buttons, other text), or a title cut by its figure
TITLE_CHECK = """(sel) => {
  const out = [];
  for (const plot of document.querySelectorAll(sel)) {
    const title = plot.querySelector('.gtitle');
    if (!title) { out.push('no title in ' + sel); continue; }
    const t = title.getBoundingClientRect();
    const p = plot.getBoundingClientRect();
    if (t.left < p.left - 1 || t.right > p.right + 1 || t.top < p.top - 1) out.push('title cut: ' + title.textContent);
    const others = plot.closest('.block') ? plot.closest('.block').querySelectorAll(
        '[data-testid="block-label"], label, .updatemenu-button, .legendtext') : [];
    for (const o of others) {
      const r = o.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const overlap = !(r.right <= t.left || r.left >= t.right || r.bottom <= t.top || r.top >= t.bottom);
      if (overlap) out.push('"' + (o.textContent || o.className) + '" covers "' + title.textContent + '"');
    }
  }
  return out;
}"""

HEADERS_CUT = """(sel) => {
  const table = document.querySelector(sel);
  const box = table.getBoundingClientRect();
  const cut = [];
  for (const th of table.querySelectorAll('thead th')) {
    const r = th.getBoundingClientRect();
    if (r.right > Math.min(box.right, window.innerWidth) + 1 || r.width < 20) cut.push(th.textContent.trim());
  }
  return cut;
}"""


# the table drawn with this text in it (gradio keeps hidden copies of rows, so ask the rendered text)
ROWS_SHOWN = """(text) => { const t = document.querySelector('#bench-comparison');
    return t.getBoundingClientRect().height > 80 && t.innerText.includes(text); }"""
ATLAS_SHOWN = ROWS_SHOWN.replace("#bench-comparison", "#atlas-table")


def _shots(tmp_path) -> Path:
    shots = Path(os.environ.get("CULTURECLIP_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """`app.py` over a world-like dataset with no --results, its launch evaluation held at a gate until the
    test has seen its progress."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from demo.app_config import parse_args, resolve_config
    from demo.live_eval import LiveEvaluator
    from demo.services import DemoServices
    from tests.demo_world import WORLD_LIKE_CONCEPTS, launch, make_dataset, make_models

    root = tmp_path_factory.mktemp("fresh_world")
    base, tuned = make_models(root / "models")
    dataset = make_dataset(root / "dataset", WORLD_LIKE_CONCEPTS)
    argv = ["--base", str(base), "--tuned", str(tuned), "--dataset", str(dataset), "--device", "cpu",
            "--cache-dir", str(root / "cache")]
    cfg = resolve_config(parse_args(argv))  # the app's own defaults: no --eval-on-start flag
    cfg.offline_world = True
    services = DemoServices(cfg)
    gate = threading.Event()
    real = LiveEvaluator._evaluate_all
    services.evaluator._evaluate_all = lambda compute=True: (gate.wait(180), real(services.evaluator, compute))[1]
    services.check()
    url, demo = launch(services)
    yield url, services, gate
    gate.set()
    demo.close()


def _open_tab(page, name: str) -> None:
    """Open a tab; on a phone the tabs that do not fit are behind gradio's "More tabs" menu."""
    page.get_by_role("tab", name="Recognize").wait_for()
    tab = page.get_by_role("tab", name=name)
    if tab.count():
        tab.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).click()


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def test_fresh_start_fills_the_dashboard_without_a_click(fresh_app, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, services, gate = fresh_app
    shots = _shots(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_role("tab", name="Benchmarks").click()
        status = page.locator("#eval-status")
        status.get_by_text("Evaluating Base CLIP and CultureCLIP").wait_for()
        assert "%" in status.inner_text()
        page.locator("#bench-message").get_by_text("Computing the first results").wait_for()
        body = page.locator("body").inner_text()
        for owner_text in ("--results", "start the app with", "CULTURECLIP_"):
            assert owner_text not in body, f"owner text shown to visitors: {owner_text!r}"
        page.screenshot(path=str(shots / "benchmarks_progress.png"), full_page=True)
        gate.set()  # the evaluation runs and ends; the page fills in by itself
        table = page.locator("#bench-comparison")
        page.wait_for_function(ROWS_SHOWN, arg="CulTwin test split", timeout=180_000)
        page.locator("#bench-bars .gtitle").wait_for()
        page.locator("#bench-heat .gtitle").wait_for()
        page.wait_for_timeout(1500)
        text = table.inner_text()
        assert "Base CLIP %" in text and "CultureCLIP %" in text and "Δ 95% interval" in text
        assert re.search(r"[−+]\d+\.\d to [−+]\d+\.\d", text), "no interval for the difference"
        assert "✅" in status.inner_text() and "Evaluated both models" in status.inner_text()
        assert page.evaluate(HEADERS_CUT, "#bench-comparison") == [], "value columns off-screen at 1280 px"
        assert page.evaluate(TITLE_CHECK, "#bench-bars .js-plotly-plot, #bench-heat .js-plotly-plot") == []
        legend = page.locator("#bench-bars .legendtext").evaluate_all("els => els.map(e => e.textContent)")
        assert sorted(legend) == ["Base CLIP", "CultureCLIP"], legend
        assert "--" not in page.locator("#bench-heat .gtitle").text_content()
        page.screenshot(path=str(shots / "benchmarks.png"), full_page=True)
        # a phone: no horizontal scroll of the page
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.set_default_timeout(60_000)
        phone.goto(url)
        _open_tab(phone, "Benchmarks")
        phone.wait_for_function(ROWS_SHOWN, arg="CulTwin test split")
        phone.locator("#bench-heat .gtitle").wait_for()
        phone.wait_for_timeout(1500)
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width} px wide)"
        phone.screenshot(path=str(shots / "benchmarks_phone.png"), full_page=True)
        browser.close()


def test_atlas_is_readable(fresh_app, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, services, gate = fresh_app
    gate.set()
    shots = _shots(tmp_path)
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: external.append(r.url)
                if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_role("tab", name="Confusion atlas").click()
        page.get_by_role("button", name="Compute the atlas").click()
        page.wait_for_function(ATLAS_SHOWN, arg="flag of Chad ↔ flag of Romania")
        page.locator("#atlas-world .gtitle").wait_for()
        page.locator("#atlas-heat .gtitle").wait_for()
        page.wait_for_timeout(1500)
        cells = page.locator("#atlas-table").inner_text().split()
        numbers = [c.strip() for c in cells if re.fullmatch(r"\s*[-−]?\d+\.\d+\s*", c)]
        assert numbers and all(len(n.split(".")[1]) <= 3 for n in numbers), [n for n in numbers if len(n.split(".")[1]) > 3]
        assert page.evaluate(HEADERS_CUT, "#atlas-table") == [], "atlas columns off-screen at 1280 px"
        assert page.evaluate(TITLE_CHECK, "#atlas-heat .js-plotly-plot, #atlas-world .js-plotly-plot") == []
        # each column and figure explained; the count of pairs further apart comes with how to read it
        legend = page.locator("#atlas-legend").inner_text()
        assert "Columns" in legend and "Figures" in legend and "higher" in legend
        msg = page.locator("#atlas-message").inner_text()
        assert "further apart" in msg and "does not mean" in msg and "Benchmarks tab" in msg
        # the world view is drawn without fetching map outlines from a CDN
        assert page.locator("#atlas-world .scatterlayer .point").count() > 0
        page.screenshot(path=str(shots / "atlas.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.set_default_timeout(120_000)
        phone.goto(url)
        _open_tab(phone, "Confusion atlas")
        phone.get_by_role("button", name="Compute the atlas").click()
        phone.locator("#atlas-world .gtitle").wait_for()
        phone.wait_for_timeout(1500)
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the atlas scrolls sideways on a phone ({width} px wide)"
        phone.screenshot(path=str(shots / "atlas_phone.png"), full_page=True)
        browser.close()
    assert not external, f"the page made external requests: {external[:5]}"
