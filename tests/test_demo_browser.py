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
def app_url(demo_world):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tests.demo_world import launch, make_services

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
        # upload an image and classify
        page.locator("input[type=file]").first.set_input_files(str(world["dataset"] / "images/gyoza/gyoza_1.png"))
        page.get_by_role("button", name="Classify").click()
        page.get_by_text("candidate labels").first.wait_for()
        page.get_by_text("gyoza (Japan)").first.wait_for()
        page.screenshot(path=str(SHOTS / "recognize.png"), full_page=True)
        # twin explorer: opening the tab fills the first pair
        page.get_by_role("tab", name="Twin explorer").click()
        page.get_by_text("How to tell it from").first.wait_for()
        page.get_by_role("button", name="Compute the confusion map").click()
        page.get_by_text("confusion %").first.wait_for()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "twin_explorer.png"), full_page=True)
        # benchmarks
        page.get_by_role("tab", name="Benchmarks").click()
        page.get_by_text("rows (main metric").wait_for()
        page.get_by_role("button", name="Download CSV").wait_for()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "benchmarks.png"), full_page=True)
        # search
        page.get_by_role("tab", name="Search").click()
        page.get_by_placeholder("a Mexican tamale on a banana leaf").fill("a flag of Chad")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_text("Top hit").wait_for()
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
