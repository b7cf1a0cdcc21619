"""Screenshots of every tab of a running app (Debian's chromium via Playwright), for the README.

    python docs/take_screenshots.py http://127.0.0.1:7861 docs/hub [benchmarks,atlas]

Start the app first (e.g. `python app.py --port 7861` with the hub defaults in the HF cache) and take them while
it starts: the Benchmarks tab is shot as a visitor finds it (the launch evaluation's progress, then the tables
it fills in by itself, and on a 390 px phone). Each tab is driven as a person would: pick an example and
classify, open a twin pair, search, compute the atlas.
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


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


def only(url: str, out: str, tabs: str) -> None:
    """Screenshots of some tabs only, e.g. `benchmarks,atlas` (in that order)."""
    shots = Path(out)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url, wait_until="networkidle")
        for tab in tabs.split(","):
            {"benchmarks": lambda: benchmarks(page, shots, browser), "atlas": lambda: atlas(page, shots)}[tab]()
        browser.close()


def main(url: str, out: str) -> None:
    shots = Path(out)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="networkidle")
        page.get_by_role("button", name="Classify").wait_for(timeout=120_000)
        page.get_by_text("flag of Chad (Chad)", exact=True).first.click()  # an example: a twin pair's image
        page.wait_for_timeout(3_000)
        page.get_by_role("button", name="Classify").click()
        page.wait_for_timeout(15_000)
        page.screenshot(path=str(shots / "recognize.png"), full_page=True)

        page.get_by_role("tab", name="Twin explorer").click()
        page.get_by_label("Search pairs").fill("Chad")
        page.get_by_label("Search pairs").press("Enter")
        page.wait_for_timeout(20_000)
        page.screenshot(path=str(shots / "twin_explorer.png"), full_page=True)

        benchmarks(page, shots, browser)

        page.get_by_role("tab", name="Search").click()
        box = page.get_by_label("Describe an image")
        box.fill("the flag of Chad")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_timeout(15_000)
        page.screenshot(path=str(shots / "search.png"), full_page=True)

        atlas(page, shots)
        browser.close()
    print("\n".join(str(p) for p in sorted(shots.glob("*.png"))))


if __name__ == "__main__":
    if len(sys.argv) > 3:
        only(*sys.argv[1:4])
    else:
        main(*sys.argv[1:3])
