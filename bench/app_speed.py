"""How fast the app answers: first page, then switching user and merge mode.

    python bench/app_speed.py                          # a Beauty-sized FAME (H=2, N=4) checkpoint
    python bench/app_speed.py --checkpoint DIR         # any trained checkpoint (its data on disk)

1. Server side (streamlit.testing.v1.AppTest, the app's script run as the server runs it): the cold
   first run (model and data set loaded, first user inspected) and every re-run after switching
   user or merge mode, with the model cached.
2. In a real browser (Debian's chromium via Playwright, when installed): seconds from starting
   `streamlit run` until the first user's history is on screen, and from a click on a merge mode
   until the new list is shown.
Without --checkpoint, an untrained FAME with Beauty's 12,101 items is written to a temporary
directory: speed does not depend on the weights. Writes bench/results/app-speed-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon" / "Beauty.txt"


def make_checkpoint(data_path: str, root: Path) -> str:
    import torch

    from fame_core.checkpoint import dataset_record, write_checkpoint
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig, build_model

    data = load_dataset(data_path)
    torch.manual_seed(0)
    model = build_model(FAMEConfig(n_items=data.n_items, n_heads=2, n_experts=4))
    write_checkpoint(root / "bench", model, dataset_record(data), {"note": "untrained, for timing"}, [])
    return "bench"


def server_side(name: str, users: list[str]) -> dict:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=300)
    at.query_params["checkpoint"] = name
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    switch, merge = [], []
    for user in users:
        t0 = time.perf_counter()
        at.text_input(key="user").set_value(user).run()
        switch.append(time.perf_counter() - t0)
        assert at.subheader[0].value == f"History of user {user}", at.subheader[0].value
    for mode in ["concat", "head:0", "head:1", "gated"] * 2:
        t0 = time.perf_counter()
        at.segmented_control(key="merge").set_value(mode).run()
        merge.append(time.perf_counter() - t0)
    return {"cold_first_run_s": round(cold, 3),
            "user_switch_s": {"median": round(statistics.median(switch), 3), "max": round(max(switch), 3), "n": len(switch)},
            "merge_toggle_s": {"median": round(statistics.median(merge), 3), "max": round(max(merge), 3), "n": len(merge)}}


def in_browser(name: str, env: dict) -> dict | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with sync_playwright() as p:
        # the browser is up before the clock starts: we time the app, not chromium's start
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"),
                                 "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
                                 "--browser.gatherUsageStats", "false"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/?checkpoint={name}", timeout=5_000)
                    break
                except Exception:
                    if time.perf_counter() - t0 > 120:
                        raise
                    time.sleep(0.1)
            page.get_by_text("History of user").first.wait_for(timeout=120_000)
            first_page = time.perf_counter() - t0
            page.get_by_text("Export for papers").wait_for(timeout=60_000)   # the whole page is drawn
            page.wait_for_load_state("networkidle")
            clicks = []
            for mode in ("concat", "head:1", "gated", "concat", "head:0", "gated"):
                t1 = time.perf_counter()
                page.get_by_text(mode, exact=True).first.click()
                page.get_by_text(f"{mode} · target rank").first.wait_for(timeout=60_000)
                clicks.append(time.perf_counter() - t1)
        finally:
            browser.close()
            proc.terminate()
            proc.wait(timeout=30)
    return {"start_to_first_page_s": round(first_page, 3),
            "merge_click_to_new_list_s": {"median": round(statistics.median(clicks), 3), "max": round(max(clicks), 3),
                                          "n": len(clicks)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="data set for the untrained timing checkpoint")
    p.add_argument("--checkpoint", help="time this checkpoint instead (its data set must be on disk)")
    p.add_argument("--users", type=int, default=10, help="users to switch through")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.checkpoint:
            root, name = Path(a.checkpoint).resolve().parent, Path(a.checkpoint).name
        else:
            if not Path(a.data).exists():
                print(f"error: data not found: {a.data} (pass --data PATH)", file=sys.stderr)
                return 2
            root = Path(tmp)
            name = make_checkpoint(a.data, root)
        os.environ["FAME_CHECKPOINTS"] = str(root)
        from fame_core.checkpoint import read_config
        from fame_core.checkpoint import load

        _, data = load(root / name)
        step = max(1, data.n_users // a.users)
        users = [data.user_ids[i] for i in range(1, data.n_users, step)][: a.users]
        cfg, record = read_config(root / name)
        display = _display(root, name)
        report = {"checkpoint": str(root / name), "data": record["name"], "items": record["n_items"],
                  "users": record["n_users"], "model": cfg["model"]["model"], "heads": cfg["model"]["n_heads"],
                  "experts": cfg["model"]["n_experts"], "date": time.strftime("%Y-%m-%d %H:%M"),
                  "cpus": os.cpu_count(), "server_side": server_side(display, users),
                  "browser": in_browser(display, dict(os.environ))}
    out = REPO / "bench" / "results" / f"app-speed-{record['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


def _display(root: Path, name: str) -> str:
    """The name the app's checkpoint picker gives a checkpoint under an extra root."""
    from fame_core.checkpoint import find_checkpoints

    names = {str(p): n for n, p in find_checkpoints([REPO / "checkpoints", root]).items()}
    return names[str((root / name).resolve())]


if __name__ == "__main__":
    raise SystemExit(main())
