"""Screenshots of every tab of a running app (Debian's chromium via Playwright), for the README.

    python docs/take_screenshots.py http://127.0.0.1:7861 docs/hub

Start the app first (e.g. `python app.py --port 7861` with the hub defaults in the HF cache). Each tab is
driven as a person would: pick an example and classify, open a twin pair, evaluate, search, compute the atlas.
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


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

        page.get_by_role("tab", name="Benchmarks").click()
        page.get_by_role("button", name="Evaluate the loaded models on the dataset's test split").click()
        page.wait_for_timeout(20_000)
        page.screenshot(path=str(shots / "benchmarks.png"), full_page=True)

        page.get_by_role("tab", name="Search").click()
        box = page.get_by_label("Describe an image")
        box.fill("the flag of Chad")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_timeout(15_000)
        page.screenshot(path=str(shots / "search.png"), full_page=True)

        page.get_by_role("tab", name="Confusion atlas").click()
        page.get_by_role("button", name="Compute the atlas").click()
        page.wait_for_timeout(40_000)
        page.screenshot(path=str(shots / "atlas.png"), full_page=True)
        browser.close()
    print("\n".join(str(p) for p in sorted(shots.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:3])
