"""A first visitor's journeys through the app in a real browser (Playwright), shared by the browser tests
(tests/test_demo_browser.py) and the README's screenshots (docs/take_screenshots.py).

Each journey drives the page as a person would and returns what it measured, so a test can assert on it
and the screenshot script can take the same pictures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

# the page's horizontal overflow: how far the document is wider than the window
OVERFLOW_JS = "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"
# elements reaching past the window's right edge (what a phone visitor would have to scroll sideways to)
WIDE_JS = """() => Array.from(document.querySelectorAll('body *')).filter(e => {
    const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1
        && getComputedStyle(e).visibility !== 'hidden'; }).slice(0, 5)
    .map(e => `${e.tagName.toLowerCase()}#${e.id}.${String(e.className).slice(0, 40)} right=${Math.round(e.getBoundingClientRect().right)}`)"""


@dataclass
class RecognizeVisit:
    viewport: dict[str, int]
    example_box: dict[str, float] | None  # the example picked, as the page was on arrival
    button_box: dict[str, float] | None  # Classify, on arrival
    scroll_before: float  # window.scrollY just before Classify
    scroll_after: float  # and once the verdicts are shown
    verdict_boxes: list[dict[str, float]] = field(default_factory=list)  # each model's card, after Classify
    verdicts: list[str] = field(default_factory=list)  # right / wrong / twin / unknown
    verdict_text: str = ""
    truth: str = ""
    overflow_px: float = 0.0
    wide: list[str] = field(default_factory=list)


def recognize(page: Any, url: str, example: int = 0, shot: Path | None = None) -> RecognizeVisit:
    """Land, pick example `example` from the gallery, click Classify, wait for both verdicts."""
    page.goto(url)
    run = page.get_by_role("button", name="Classify", exact=True)
    run.wait_for(timeout=180_000)
    thumbs = page.locator("#examples .thumbnail-item")
    thumbs.nth(example).wait_for()
    page.wait_for_timeout(300)
    ex_box, run_box = thumbs.nth(example).bounding_box(), run.bounding_box()
    thumbs.nth(example).click()
    page.wait_for_function("document.querySelector('#true-concept textarea, #true-concept input').value !== ''")
    truth = page.locator("#true-concept textarea, #true-concept input").first.input_value()
    before = page.evaluate("window.scrollY")
    run.click()
    cards = page.locator("#verdicts .verdict")
    cards.nth(1).wait_for(timeout=180_000)
    page.wait_for_timeout(600)  # the tuned panel's title and the scroll (if any) settle
    visit = RecognizeVisit(
        viewport=page.viewport_size, example_box=ex_box, button_box=run_box, scroll_before=before,
        scroll_after=page.evaluate("window.scrollY"),
        verdict_boxes=[cards.nth(i).bounding_box() for i in range(cards.count())],
        verdicts=[cards.nth(i).get_attribute("data-verdict") for i in range(cards.count())],
        verdict_text=page.locator("#verdicts").inner_text(), truth=truth,
        overflow_px=page.evaluate(OVERFLOW_JS), wide=page.evaluate(WIDE_JS))
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))  # what the visitor sees: the viewport, not the whole page
    return visit


@dataclass
class SearchVisit:
    message: str
    labels: list[str]  # the two galleries' labels ("Base CLIP: 3 of 8 are flag of Chad")
    captions: list[str]
    overflow_px: float = 0.0


def search(page: Any, url: str, query: str, shot: Path | None = None, goto: bool = True) -> SearchVisit:
    """Open Search, run `query`, wait for both galleries."""
    if goto:
        page.goto(url)
    page.get_by_role("tab", name="Search").click(timeout=180_000)
    box = page.get_by_label("Describe an image")
    box.fill(query)
    page.get_by_role("button", name="Search", exact=True).click()
    msg = page.locator("#search-message")
    page.wait_for_function("document.querySelector('#search-message').innerText.includes('images for')",
                           timeout=180_000)
    page.locator("#search-base .thumbnail-item").first.wait_for()
    page.wait_for_timeout(800)
    labels = [page.locator(f"#search-{w} [data-testid='block-label']").first.inner_text() for w in ("base", "tuned")]
    captions = page.locator("#search-base .caption-label, #search-tuned .caption-label").all_inner_texts()
    visit = SearchVisit(msg.inner_text(), labels, captions, page.evaluate(OVERFLOW_JS))
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
    return visit


def copy_query(page: Any, url: str) -> str:
    """The first search suggestion the page offers (a concept the dataset has images of)."""
    page.goto(url)
    page.get_by_role("tab", name="Search").click(timeout=180_000)
    return (page.get_by_label("Describe an image").get_attribute("placeholder") or "").removeprefix("e.g. ")
