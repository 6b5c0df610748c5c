"""Do the views block? Times the issue-13 goals on the bundled Sports model (18,357 items).

    python bench/views_speed.py [--checkpoint checkpoints/sports-fame] [--user 230] [--no-browser]
                                [--no-umap] [--out JSON]

Measured, each from a fresh disk cache (a temporary $FAME_CACHE) and cleared in-memory caches:

1. Case study, server side (streamlit.testing.v1.AppTest runs the app's script as the server does,
   after the server's imports): the first visit on the deep link until lists, gates, attention and
   router maps are drawn (model and data set opened, user inspected; the facet checks do not run),
   then re-runs after a merge toggle and after a user switch.
2. Case study in a real browser (Debian's chromium via Playwright, when installed), served by
   `streamlit run app/serve.py -- --warm NAME` (the README's command: it warms imports, the default
   checkpoint and NAME before answering; then again without `--warm`): seconds from the server's
   first HTTP answer until the history, the static figures and the export section are on screen,
   the same for a second visit, and a third visit with `interactive=true` until the five plotly
   charts are drawn.
3. Facet explorer, server side: first open with PCA maps; first open with UMAP (computed and written
   to the disk cache); UMAP again after an app restart (in-memory caches cleared: read from disk).

The machine is shared (2 cores, other agents training and testing beside it), so the JSON also
records the load average and the busiest other processes, and a fixed CPU reference workload
timed at the start and the end: `ratio_to_reference` divides each time by it, which is more
comparable between runs than the seconds. Writes bench/results/views-speed-<data>.json.
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
APP = str(REPO / "app" / "streamlit_app.py")
SERVE = str(REPO / "app" / "serve.py")       # the README's launch command (warms the process first)


def reference_s() -> float:
    """Median seconds of a fixed single-threaded numpy workload (the machine's speed right now)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 400))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            a = np.tanh(a @ a.T / 400)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine_state() -> dict:
    """Load average and the five busiest other processes (command name and %CPU), from ps."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        out = []
    others = []
    for line in out:
        pid, cpu, comm = line.split(None, 2)
        if int(pid) != os.getpid() and float(cpu) >= 5:
            others.append(f"{comm} {float(cpu):.0f}%")
    return {"load_average_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "busiest_other_processes": others[:5]}


def fresh_app(**params):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=600)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def timed(run) -> float:
    t0 = time.perf_counter()
    at = run()
    took = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    return took


def case_study(name: str, user: str, others: list[str]) -> dict:
    at = fresh_app(checkpoint=name, user=user, k="20")
    first = timed(lambda: at.run())
    assert at.subheader[0].value == f"History of user {user}" and len(at.get("image")) == 5
    assert not any(m.value.startswith("**Specialisation checks**") for m in at.markdown)
    merge, switch = [], []
    for mode in ["concat", "head:0", "head:1", "gated"] * 2:
        merge.append(timed(lambda: at.segmented_control(key="merge").set_value(mode).run()))
    for u in others:
        switch.append(timed(lambda: at.text_input(key="user").set_value(u).run()))
        assert at.subheader[0].value == f"History of user {u}"
    return {"first_visit_s": round(first, 3),
            "merge_toggle_s": {"median": round(statistics.median(merge), 3), "max": round(max(merge), 3), "n": len(merge)},
            "user_switch_s": {"median": round(statistics.median(switch), 3), "max": round(max(switch), 3), "n": len(switch)}}


def facet_explorer(name: str, umap: bool = True) -> dict:
    def open_page(method):
        at = fresh_app(checkpoint=name, projection=method)
        at.run()
        t0 = time.perf_counter()
        at.switch_page("views/facet_explorer.py").run()
        took = time.perf_counter() - t0
        assert not at.exception and len(at.get("plotly_chart")) == 3, [e.value for e in at.exception]
        return took

    out = {"first_open_pca_s": round(open_page("pca"), 3)}
    if umap:
        out.update(first_open_umap_computed_s=round(open_page("umap"), 3),
                   umap_after_restart_from_disk_s=round(open_page("umap"), 3))
    return out


def in_browser(name: str, user: str, env: dict, warm: bool = True) -> dict | None:
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
    launched = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", SERVE, "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"] + (["--", "--warm", name] if warm else []),
                            cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        t0 = time.perf_counter()
        while True:                                  # the server is up when it answers its health check
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                up = time.perf_counter() - launched     # includes the warm-up, which moves work before "up"
                break
            except OSError:
                if time.perf_counter() - t0 > 120:
                    raise
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            t1 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/?checkpoint={name}&user={user}&k=20", timeout=60_000)
            page.get_by_text(f"History of user {user}").first.wait_for(timeout=120_000)
            history = time.perf_counter() - t1
            page.get_by_text("Where the experts look").first.wait_for(timeout=120_000)
            page.locator("[data-testid=stImage] img").nth(4).wait_for(timeout=120_000)  # gates + 2 heads x 2 maps
            maps = time.perf_counter() - t1
            page.get_by_text("Export for papers").first.wait_for(timeout=120_000)
            whole = time.perf_counter() - t1
            # a second visit: modules imported and the model open, so what is left is the page itself
            again = browser.new_page(viewport={"width": 1400, "height": 1600})
            t2 = time.perf_counter()
            again.goto(f"http://127.0.0.1:{port}/?checkpoint={name}&user={user}&k=20", timeout=60_000)
            again.get_by_text(f"History of user {user}").first.wait_for(timeout=120_000)
            history2 = time.perf_counter() - t2
            again.locator("[data-testid=stImage] img").nth(4).wait_for(timeout=120_000)
            maps2 = time.perf_counter() - t2
            # the same with the hover-able plotly charts (interactive=true)
            plotly = browser.new_page(viewport={"width": 1400, "height": 1600})
            t3 = time.perf_counter()
            plotly.goto(f"http://127.0.0.1:{port}/?checkpoint={name}&user={user}&k=20&interactive=true", timeout=60_000)
            plotly.locator(".js-plotly-plot").nth(4).wait_for(timeout=120_000)
            maps3 = time.perf_counter() - t3
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"launch_to_server_up_s": round(up, 3),
            "server_up_to_history_s": round(history, 3), "server_up_to_lists_gates_maps_s": round(maps, 3),
            "server_up_to_export_section_s": round(whole, 3),
            "second_visit_to_history_s": round(history2, 3), "second_visit_to_lists_gates_maps_s": round(maps2, 3),
            "interactive_visit_to_plotly_maps_s": round(maps3, 3),
            "note": "server: `streamlit run app/serve.py` (imports, default checkpoint and one case study warmed "
                    "before it answers); maps: the static SVG figures (default), then the plotly charts "
                    "(interactive=true) on a third visit"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "sports-fame"))
    p.add_argument("--user", default="230")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP timings (minutes on 2 cores)")
    p.add_argument("--out", help="JSON to write (default bench/results/views-speed-<data>.json)")
    a = p.parse_args()
    import fame_core

    ckpt = Path(a.checkpoint).resolve()
    _, data = fame_core.load(ckpt)
    if data is None:
        print(f"error: the data set of {ckpt} is not on disk; see the README's data section", file=sys.stderr)
        return 2
    others = [data.user_ids[i] for i in range(1, data.n_users, max(1, data.n_users // 10))][:10]
    if ckpt.parent != REPO / "checkpoints":
        os.environ["FAME_CHECKPOINTS"] = str(ckpt.parent)
    from fame_core.checkpoint import find_checkpoints

    roots = [REPO / "checkpoints"] + ([ckpt.parent] if ckpt.parent != REPO / "checkpoints" else [])
    name = {str(p): n for n, p in find_checkpoints(roots).items()}[str(ckpt)]
    before, state = reference_s(), machine_state()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FAME_CACHE"] = cache
        report = {"checkpoint": str(ckpt.relative_to(REPO)) if ckpt.is_relative_to(REPO) else str(ckpt),
                  "data": data.name, "items": data.n_items, "user": a.user, "date": time.strftime("%Y-%m-%d %H:%M"),
                  "case_study": case_study(name, a.user, others)}
        report["browser"] = None if a.no_browser else in_browser(name, a.user, dict(os.environ))
        if report["browser"]:   # the same without `--warm NAME`: the first visitor opens the checkpoint
            report["browser_checkpoint_not_warmed"] = in_browser(name, a.user, dict(os.environ), warm=False)
        report["facet_explorer"] = facet_explorer(name, umap=not a.no_umap)
    after = reference_s()
    ref = statistics.mean([before, after])
    report["machine"] = dict(state, reference_workload_s={"start": round(before, 3), "end": round(after, 3)},
                             note="shared 2-core machine: other agents ran beside this (see busiest_other_processes)")

    def ratios(d):
        return {k: ratios(v) if isinstance(v, dict) else round(v / ref, 1)
                for k, v in d.items() if isinstance(v, (dict, float)) and k not in ("max", "n")}

    report["ratio_to_reference"] = {k: ratios(report[k]) for k in ("case_study", "browser", "browser_checkpoint_not_warmed",
                                                                   "facet_explorer") if report.get(k)}
    out = Path(a.out).resolve() if a.out else REPO / "bench" / "results" / f"views-speed-{data.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
