"""End to end in a real browser: `streamlit run` on 127.0.0.1, Debian's chromium driven by
Playwright, a deep link to a user, and that user's lists on the page."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import fame_core
from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(port: int, stdout=subprocess.DEVNULL, wait: float = 120) -> subprocess.Popen:
    """The README's command (`streamlit run app/serve.py`) from the repository root (its
    .streamlit/config.toml turns usage statistics off) on 127.0.0.1:port; returns once the port
    answers (or after `wait` seconds)."""
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "serve.py"),
                             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port)],
                            cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT if stdout == subprocess.PIPE else stdout,
                            text=True)
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    return proc


@pytest.fixture(scope="module")
def server():
    if CHROMIUM is None or not _has_playwright():
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and playwright for the browser test (.ci/run installs them)")
        pytest.skip("chromium or playwright not installed")
    port = free_port()
    proc = launch_app(port, stdout=subprocess.DEVNULL)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
        return True
    except ImportError:
        return False


def test_deep_link_opens_the_users_lists_in_a_browser(server):
    from playwright.sync_api import sync_playwright

    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    insp = fame_core.inspect(model, *fame_core.user_example(data, "42"), top_k=5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        outside, errors = [], []        # requests to any other host (usage statistics, CDNs) and console errors
        page.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server}/?user=42&merge=concat&k=5", timeout=60_000)
        page.get_by_text("History of user 42").wait_for(timeout=60_000)
        page.get_by_text(f"concat · target rank {insp.target_rank['concat']}").wait_for(timeout=30_000)
        page.get_by_text(f"Head 0 gate {insp.gates[0]:.3f}").first.wait_for(timeout=30_000)
        for item in (insp.top["head:0"][0], insp.top["concat"][0]):      # cells: optional ▶/● marker, then the label
            page.get_by_role("cell", name=data.label(item)).first.wait_for(timeout=30_000)
        assert "user=42" in page.url
        figures = page.locator("[data-testid=stImage] img")               # gates + 2 heads x (attention, router)
        figures.nth(4).wait_for(timeout=30_000)
        assert figures.count() == 5 and figures.nth(0).get_attribute("src").startswith("data:image/svg+xml")
        assert page.locator(".js-plotly-plot").count() == 0
        page.get_by_text("Interactive charts").first.click()                 # the hover-able plotly versions
        page.locator(".js-plotly-plot").nth(4).wait_for(timeout=60_000)
        assert "interactive=true" in page.url
        assert outside == [] and errors == [], (outside, errors)
        browser.close()


def test_the_repositorys_streamlit_config_turns_usage_statistics_off():
    import tomllib

    with open(REPO / ".streamlit" / "config.toml", "rb") as f:
        config = tomllib.load(f)
    assert config["browser"]["gatherUsageStats"] is False
    # Streamlit reads the project file of the working directory: `streamlit run` from the root uses it
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=REPO, capture_output=True,
                           text=True, timeout=120).stdout
    assert f"# The value below was set in {REPO / '.streamlit' / 'config.toml'}\ngatherUsageStats = false" in shown


# every whole-number URL parameter of every page (tests/test_app.py checks the same headlessly)
NUMERIC_LINKS = {"": ("k", "head"), "facets": ("item",), "cohort": ("k",), "compare": ("k",), "interventions": ("k",)}
BAD_NUMBERS = ["inf", "1e309", "-1", "nan", "abc"]
LAST_ON_PAGE = {"": "Export for papers", "facets": "Are the heads facets?", "cohort": "Which users",
                "compare": "One user under both models", "interventions": "Users most changed"}


@pytest.mark.parametrize("url_path", NUMERIC_LINKS)
def test_bad_numbers_in_a_link_are_a_warning_never_an_exception_box(server, url_path):
    """k=inf or 1e309 once reached Streamlit's number_input and showed an OverflowError box."""
    from playwright.sync_api import sync_playwright

    keys = NUMERIC_LINKS[url_path]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        for value in BAD_NUMBERS:
            page.goto(f"{server}/{url_path}?" + "&".join(f"{key}={value}" for key in keys), timeout=60_000)
            exception = page.locator('[data-testid="stException"]')
            exception.or_(page.get_by_text(LAST_ON_PAGE[url_path]).first).first.wait_for(timeout=180_000)
            assert exception.count() == 0, (url_path, value, exception.first.inner_text()[:300])
            warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
            assert all(sum(f"{key}={value}" in w for w in warnings) == 1 for key in keys), (url_path, value, warnings)
        browser.close()
