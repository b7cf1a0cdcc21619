"""Screenshots of a running app for the README (Debian's chromium via Playwright), taken by the same
journeys the browser tests assert on (tests/browser_journeys.py):

    python docs/take_screenshots.py http://127.0.0.1:7861 docs/hub [recognize,search,twin_explorer,benchmarks,atlas]

Start the app first (e.g. `python app.py --port 7861` with the hub defaults in the HF cache). Recognize is
taken as a first visitor sees it at 1280x900 (land, pick the first example, Classify: the viewport, not the
whole page) and on a phone at 390x844 (recognize_phone.png); Search at 1280x900 with a concept query; the
other tabs as full pages after their first action; Benchmarks as a visitor finds it while the app starts
(the launch evaluation's progress, then the tables it fills in by itself, and on a 390 px phone).
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import browser_journeys as J  # noqa: E402 - the journeys the browser tests assert on

ALL = ("recognize", "search", "twin_explorer", "benchmarks", "atlas")


ROWS_SHOWN = """(text) => { const t = document.querySelector('#bench-comparison');
    return t && t.getBoundingClientRect().height > 80 && t.innerText.includes(text); }"""


def benchmarks(page, shots: Path, browser) -> None:
    """The dashboard as a visitor finds it: the launch evaluation's progress, then the filled tables (no click);
    and on a phone."""
    page.get_by_role("tab", name="Benchmarks").click()
    page.wait_for_timeout(3_000)
    if "Evaluating" in page.locator("#eval-status").inner_text():
        page.screenshot(path=str(shots / "benchmarks_progress.png"), full_page=True)
    page.wait_for_function(ROWS_SHOWN, arg="CulTwin test split", timeout=1_200_000)
    page.wait_for_timeout(3_000)
    page.screenshot(path=str(shots / "benchmarks.png"), full_page=True)
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.goto(page.url)
    phone.get_by_role("button", name="More tabs").click()
    phone.locator(".overflow-dropdown button", has_text="Benchmarks").click()
    phone.wait_for_function(ROWS_SHOWN, arg="CulTwin test split", timeout=120_000)
    phone.wait_for_timeout(3_000)
    phone.screenshot(path=str(shots / "benchmarks_phone.png"), full_page=True)
    phone.close()


def atlas(page, shots: Path) -> None:
    page.get_by_role("tab", name="Confusion atlas").click()
    page.get_by_role("button", name="Compute the atlas").click()
    page.locator("#atlas-world .gtitle").wait_for(timeout=300_000)
    page.wait_for_timeout(3_000)
    page.screenshot(path=str(shots / "atlas.png"), full_page=True)


def main(url: str, out: str, only: str = ",".join(ALL)) -> None:
    shots = Path(out)
    shots.mkdir(parents=True, exist_ok=True)
    want = set(only.split(","))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=J.CHROMIUM, args=J.ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(180_000)
        if "recognize" in want:
            v = J.recognize(page, url, example=0, shot=shots / "recognize.png")
            print("recognize:", v.truth, v.verdicts, "scrollY", v.scroll_after)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.set_default_timeout(180_000)
            v = J.recognize(phone, url, example=1, shot=shots / "recognize_phone.png")
            print("phone:", v.truth, v.verdicts, "overflow px", v.overflow_px)
            phone.close()
        if "search" in want:
            first = J.copy_query(page, url)
            v = J.search(page, url, first, shot=shots / "search.png")
            print("search:", v.labels)
        if "twin_explorer" in want:
            page.goto(url)
            page.get_by_role("tab", name="Twin explorer").click()
            page.get_by_text("How to tell it from").first.wait_for()
            page.locator("#confusion-gallery .thumbnail-item, #pair-a .thumbnail-item").first.wait_for()
            page.wait_for_timeout(3_000)
            page.screenshot(path=str(shots / "twin_explorer.png"), full_page=True)
        if "benchmarks" in want:
            page.goto(url, wait_until="networkidle")
            benchmarks(page, shots, browser)
        if "atlas" in want:
            page.goto(url, wait_until="networkidle")
            atlas(page, shots)
        browser.close()
    print("\n".join(str(p) for p in sorted(shots.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:4])
