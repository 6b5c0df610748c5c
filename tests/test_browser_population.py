"""The Cohort and Compare pages in a real browser, opened from deep links on their own url paths
(the server fixture of tests/test_browser.py: `streamlit run`, chromium driven by Playwright)."""

import fame_core
from fame_core.compare import TEST_NAME
from tests.conftest import REPO
from tests.test_browser import CHROMIUM, server  # noqa: F401 - the fixture


def open_page(url: str):
    from playwright.sync_api import sync_playwright

    p = sync_playwright().start()
    browser = p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url, timeout=60_000)
    return p, browser, page


def test_cohort_deep_link(server):  # noqa: F811
    p, browser, page = open_page(f"{server}/cohort?checkpoint=demo&slice=history_length&bucket=21-50")
    try:
        page.get_by_text("Gate over users").wait_for(timeout=120_000)
        page.get_by_text("(history_length = 21-50)", exact=False).first.wait_for(timeout=30_000)
        assert "/cohort" in page.url and "bucket=21-50" in page.url
    finally:
        browser.close()
        p.stop()


def test_compare_deep_link(server):  # noqa: F811
    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    rank = fame_core.inspect(model, *fame_core.user_example(data, "42")).target_rank["gated"]
    p, browser, page = open_page(f"{server}/compare?a=demo&b=demo-sasrec&user=42")
    try:
        page.get_by_text(TEST_NAME, exact=False).first.wait_for(timeout=120_000)
        page.get_by_text(f"target rank {rank} ", exact=False).first.wait_for(timeout=60_000)
        assert "/compare" in page.url and "user=42" in page.url
    finally:
        browser.close()
        p.stop()
