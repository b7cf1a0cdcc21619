"""The app in a real browser (Debian's chromium via Playwright): load, upload, classify, open every tab.

Screenshots go to $CULTURECLIP_SCREENSHOTS or the test's tmp folder (the README's are of the real offline
world, in docs/world/, taken the same way)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tests.demo_world import WORLD_LIKE_CONCEPTS, launch, make_services, make_world

    # flags and tartans only, like the offline world (artifacts/world): the copy must not talk of food
    demo_world = make_world(tmp_path_factory.mktemp("browser_world"), WORLD_LIKE_CONCEPTS)
    services = make_services(demo_world, offline_world=True)
    services.check()
    url, demo = launch(services)
    assert services.wait_index(120), "the dataset index was not built in 2 minutes"
    yield url, demo_world
    demo.close()


def test_browser_flow(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, world = app_url
    SHOTS = Path(os.environ.get("CULTURECLIP_SCREENSHOTS", tmp_path / "screenshots"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_text("Offline twin world").wait_for()
        # the copy matches what is loaded: no food in a world of flags and tartans
        body = page.locator("body").inner_text().lower()
        for word in ("gyoza", "tamale", "jiaozi", "momo", "kilt"):
            assert word not in body, f"the page speaks of {word!r}"
        assert "flag of chad vs flag of romania" in body
        # examples: a gallery of twin pairs, each labelled with its true concept
        examples = page.locator("#examples")
        examples.get_by_text("Campbell tartan (Clan Campbell)").first.wait_for()
        ex_text = examples.inner_text()
        assert ex_text.index("flag of Chad (Chad)") < ex_text.index("flag of Romania (Romania)")
        assert "Black Watch tartan" in ex_text and "Campbell tartan" in ex_text
        examples.get_by_text("flag of Romania (Romania)").first.click()
        page.wait_for_function("document.querySelector('#true-concept textarea, #true-concept input').value.includes('Romania')")
        # the picked 48-px image is shown large, upscaled nearest-neighbour
        img = page.locator("#input-image img").first
        img.wait_for()
        page.wait_for_timeout(500)
        box = img.bounding_box()
        assert box and box["height"] >= 200, f"the example image is shown at {box}"
        assert img.evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
        # typed labels are shown literally (no link, no maths)
        page.get_by_label("Extra labels (comma separated)").fill("[evil](https://evil.example) $$x^2$$, www.evil.example")
        page.locator("#options").get_by_text("Candidate labels, WiSE-FT blend, top-k").click()  # the accordion
        page.get_by_label("Use catalog concepts as candidate labels").uncheck()  # only the typed labels
        # WiSE-FT: the right panel is titled by what it shows
        alpha = page.get_by_label("WiSE-FT α (0 = base weights, 1 = CultureCLIP)", exact=False)
        num = page.locator("input[type=number][aria-label*='WiSE-FT']")
        (num if num.count() else alpha).first.fill("0.5")
        (num if num.count() else alpha).first.press("Enter")
        page.get_by_role("button", name="Classify").click()
        page.get_by_text("candidate labels").first.wait_for()
        page.get_by_text("WiSE-FT α=0.5").first.wait_for()
        assert page.locator("a[href*='evil.example']").count() == 0 and page.locator(".katex").count() == 0
        assert page.get_by_text("$$x^2$$", exact=False).count() >= 1
        page.screenshot(path=str(SHOTS / "recognize.png"), full_page=True)
        page.get_by_label("Use catalog concepts as candidate labels").check()
        page.get_by_label("Extra labels (comma separated)").fill("")
        # own upload: the true concept is cleared
        page.locator("input[type=file]").first.set_input_files(str(world["dataset"] / "images/flag_chad/flag_chad_1.png"))
        page.wait_for_function("document.querySelector('#true-concept textarea, #true-concept input').value === ''")
        page.get_by_role("button", name="Classify").click()
        page.get_by_text("flag of Chad (Chad)").first.wait_for()
        # twin explorer: opening the tab fills the first pair
        page.get_by_role("tab", name="Twin explorer").click()
        page.get_by_text("How to tell it from").first.wait_for()
        page.get_by_label("Search pairs").fill("Slovakia")
        page.get_by_label("Search pairs").press("Enter")
        page.get_by_text("How to tell it from flag of Slovenia").first.wait_for()
        page.wait_for_timeout(1500)
        ticks = page.locator(".js-plotly-plot .xtick text").evaluate_all("els => els.map(e => e.textContent)")
        heat = [t for t in ticks if "#" in t]
        assert len(set(heat)) == 8, f"heatmap columns collide: {heat}"
        assert page.locator(".js-plotly-plot .colorbar").count() == 1  # one colour scale, one colourbar
        shown = page.locator("#confusion-gallery .caption-label, #pair-a .caption-label, #pair-b .caption-label")
        assert shown.count() >= 8
        for i in range(shown.count()):
            cut = shown.nth(i).evaluate("e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1")
            assert not cut, f"gallery caption cut off: {shown.nth(i).inner_text()}"
        # no empty "All pairs" table with placeholder headers (1 2 3) before the map is computed
        assert not page.get_by_text("All pairs", exact=True).first.is_visible()
        page.get_by_role("button", name="Compute the confusion map").click()
        page.get_by_text("confusion %").first.wait_for()
        headers = page.locator("th").all_inner_texts()
        assert any("pair" in h for h in headers) and not any(h.strip() in ("1", "2", "3") for h in headers), headers
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "twin_explorer.png"), full_page=True)
        # benchmarks
        page.get_by_role("tab", name="Benchmarks").click()
        page.get_by_text("rows (main metric").wait_for()
        page.get_by_text("Every result: filters").click()  # filters, all rows and the CSV are one click away
        page.get_by_role("button", name="Download CSV").wait_for()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "benchmarks.png"), full_page=True)
        # search: the suggestion is a concept of the dataset; the query is echoed literally
        page.get_by_role("tab", name="Search").click()
        box = page.get_by_label("Describe an image")
        assert "flag of Chad" in (box.get_attribute("placeholder") or "")
        box.fill("flag of Chad")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_text("are flag of Chad").first.wait_for()  # "k of N are flag of Chad" per model
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "search.png"), full_page=True)
        # a bad upload shows a message, and the page keeps working
        page.get_by_role("tab", name="Recognize").click()
        bad = tmp_path / "bad.png"
        bad.write_text("not an image")
        page.get_by_role("button", name="Clear").first.click() if page.get_by_role("button", name="Clear").count() else None
        page.locator("input[type=file]").first.set_input_files(str(bad))
        page.get_by_role("button", name="Classify").click()
        page.get_by_text("not an image").first.wait_for()
        browser.close()
    assert not external, f"the page made external requests: {external[:5]}"
    for name in ("recognize", "twin_explorer", "benchmarks", "search"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


VISIBLE_ERRORS = """() => Array.from(document.querySelectorAll('*')).filter(e => e.children.length === 0
    && /^\\s*Error\\s*$/.test(e.textContent) && e.offsetParent !== null).length"""


def test_twin_explorer_while_the_dataset_index_is_built(app_url):
    """Opening the twin explorer before the dataset images are embedded (minutes for ViT-B/32 on CPU) shows the
    pair's text and images with the progress, not "Error" panels, and fills in the figures once the index is
    ready. (A scripted pass saw the panels after a Classify click without an image: the click was incidental.)"""
    import threading

    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.demo_world import launch, make_services

    _, world = app_url
    services = make_services(world, offline_world=True)
    services.check()
    gate = threading.Event()
    real = services.index._embed_dataset
    services.index._embed_dataset = lambda emb: gate.wait(120) and real(emb)
    url, demo = launch(services)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text("Offline twin world").wait_for()
            page.get_by_role("button", name="Classify").click()  # no image
            page.get_by_text("No image").first.wait_for()
            page.get_by_role("tab", name="Twin explorer").click()
            page.get_by_text("How to tell it from").first.wait_for()
            page.get_by_text("still being embedded").first.wait_for()
            page.wait_for_timeout(2500)  # a refresh tick while still indexing keeps the preview
            assert page.locator("#confusion-gallery").count() == 1
            assert page.evaluate(VISIBLE_ERRORS) == 0, "the twin explorer shows Error panels while indexing"
            assert page.locator(".toast-body").count() == 0
            # the confusion map and search say the same (a notice and a message), without Error panels either
            page.get_by_role("button", name="Compute the confusion map").click()
            page.locator(".toast-body").get_by_text("still being embedded").first.wait_for()
            page.get_by_role("tab", name="Search").click()
            page.get_by_label("Describe an image").fill("flag of Chad")
            page.get_by_role("button", name="Search", exact=True).click()
            page.locator("#search-message").get_by_text("still being embedded").wait_for()
            assert page.evaluate(VISIBLE_ERRORS) == 0, "Error panels while indexing"
            page.get_by_role("tab", name="Twin explorer").click()
            gate.set()  # the index finishes: the figures fill in without another click
            page.get_by_text("images of this pair").first.wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            assert page.evaluate(VISIBLE_ERRORS) == 0
            browser.close()
    finally:
        gate.set()
        demo.close()


def _shots(tmp_path) -> Path:
    shots = Path(os.environ.get("CULTURECLIP_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def test_first_visit_both_verdicts_in_view_after_classify(app_url, tmp_path):
    """(a) 1280x900: land, pick an example, Classify: both models' answers, each with its verdict against the
    example's true concept, are inside the viewport, and nothing scrolled."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests import browser_journeys as J

    url, _ = app_url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=J.ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        v = J.recognize(page, url, example=0, shot=_shots(tmp_path) / "recognize_first_visit.png")
        hover = page.locator("#verdicts .who").first.get_attribute("title")
        browser.close()
    h = v.viewport["height"]
    # the first action is in view on arrival: an example and the Classify button
    assert v.example_box["y"] + v.example_box["height"] <= h and v.button_box["y"] + v.button_box["height"] <= h
    assert v.scroll_before == 0 and v.scroll_after == 0, "the page scrolled"
    assert len(v.verdict_boxes) == 2
    for box in v.verdict_boxes:
        assert box["y"] >= 0 and box["y"] + box["height"] <= h, f"a verdict is outside the viewport: {box}"
    assert all(k in ("right", "wrong", "twin") for k in v.verdicts), v.verdicts  # the truth is known
    assert v.truth and v.truth in v.verdict_text and "Base CLIP" in v.verdict_text and "CultureCLIP" in v.verdict_text
    assert hover and "/" in hover  # the model's spec on hover (here a folder)


def test_phone_no_horizontal_page_scroll_on_the_answers(app_url, tmp_path):
    """(d) 390x844: the same journey on a phone: the page never scrolls sideways, and the verdicts are
    brought into view after Classify."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests import browser_journeys as J

    url, _ = app_url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=J.ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(60_000)
        v = J.recognize(page, url, example=1, shot=_shots(tmp_path) / "recognize_phone.png")
        browser.close()
    assert v.overflow_px <= 0, f"the page is {v.overflow_px}px wider than the phone: {v.wide}"
    assert len(v.verdict_boxes) == 2
    first = v.verdict_boxes[0]
    assert first["y"] >= 0 and first["y"] + first["height"] <= v.viewport["height"], first
    assert all(b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in v.verdict_boxes), v.verdict_boxes


def test_search_says_how_well_each_model_did(app_url, tmp_path):
    """Search marks the hits that are the queried concept and says "k of N are <concept>" per model."""
    import re

    sync_api = pytest.importorskip("playwright.sync_api")
    from tests import browser_journeys as J

    url, _ = app_url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=J.ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        v = J.search(page, url, "flag of Chad", shot=_shots(tmp_path) / "search_marked.png")
        browser.close()
    assert re.fullmatch(r"Base CLIP: \d+ of 8 are flag of Chad", v.labels[0].strip()), v.labels
    assert re.fullmatch(r"CultureCLIP: \d+ of 8 are flag of Chad", v.labels[1].strip()), v.labels
    assert len(v.captions) == 16 and all(c.startswith(("✓ flag of Chad", "✗ ")) for c in v.captions), v.captions
    assert re.search(r"Base CLIP: \d+ of 8 are flag of Chad", v.message), v.message
