"""Screenshots of the app for the documentation site, taken in a real browser.

    python bench/screenshots.py                 # docs/img/{case-study,cohort,compare}-{1280,1920}.png

Starts `streamlit run app/serve.py` on 127.0.0.1 with the paper's data as a data root
(`../shared/data`, override with --data-root), opens the case study of Sports user 230
(sports-fame-gated), the Cohort page of the same checkpoint and Compare sports-sasrec vs
sports-fame-gated in Debian's chromium (Playwright), and writes one PNG per page and width. It
writes only those files (each replaced atomically); the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = {"case-study": ("/?checkpoint=sports-fame-gated&user=230&k=20", "History of user 230"),
         "cohort": ("/cohort?checkpoint=sports-fame-gated", "Gate"),
         "compare": ("/compare?a=sports-sasrec&b=sports-fame-gated", "Wilcoxon")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument("--widths", type=int, nargs="+", default=[1280, 1920])
    a = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: chromium is not installed; apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FAME_DATA_ROOTS=a.data_root)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "serve.py"),
                             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for width in a.widths:
                for name, (url, wait_for) in PAGES.items():
                    page = browser.new_page(viewport={"width": width, "height": 1100})
                    page.goto(f"http://127.0.0.1:{port}{url}", timeout=120_000)
                    page.get_by_text(wait_for).first.wait_for(timeout=300_000)
                    page.wait_for_timeout(4000)          # figures drawn after the first text
                    target = out / f"{name}-{width}.png"
                    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
                    page.screenshot(path=str(tmp))
                    os.replace(tmp, target)
                    print(target)
                    page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
