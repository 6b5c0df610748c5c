"""What every page shares: the configured checkpoint roots, cached models and tables, and the
checks that turn a bad link or a missing data set into a friendly message.

Presentation glue only; every number comes from fame_core.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import fame_core  # installed by `pip install -r requirements.txt` (an editable install of this clone)
from fame_core import datahome
from fame_core import cache, lists, scales  # (fame_core.facets, with scikit-learn, on first use)
from fame_core.checkpoint import find_checkpoints
from fame_core.users import from_cohort

REPO = Path(__file__).resolve().parents[1]

DEFAULT_CHECKPOINT = "demo"
MAP_ITEMS = 5000    # items drawn on a map: a fixed random sample beyond this (UMAP of 18k items takes minutes)
AUTO_CHECKS_ITEMS = 5000   # the Facet explorer measures at once up to this many items; beyond, on request


@dataclass(frozen=True)
class PageContext:
    """What the sidebar chose, for every page: the checkpoint (display name and path), its data
    set (None where it is not on disk) and the model."""

    name: str
    path: str
    data_path: str | None
    model: object
    data: object | None

    @property
    def config(self):
        return self.model.config

    @property
    def n_heads(self) -> int:
        return self.model.config.n_heads

    @property
    def n_experts(self) -> int:
        return self.model.config.n_experts

    def label(self, item: int, short: bool = False) -> str:
        return self.data.label(item, short=short) if self.data is not None else f"item {int(item)}"

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")


def context() -> PageContext:
    return st.session_state["ctx"]


def default_checkpoint(names: list[str]) -> str | None:
    """The checkpoint the sidebar opens without a link: demo when present, else the first."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in names else (names[0] if names else None)


def _launch_args(option: str) -> list[Path]:
    """The folders given at launch as `-- OPTION DIR` or `-- OPTION=DIR` (repeatable)."""
    argv, found = sys.argv[1:], []
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            found.append(Path(argv[i + 1]))
        elif arg.startswith(option + "="):
            found.append(Path(arg.split("=", 1)[1]))
    return found


def checkpoint_roots() -> list[Path]:
    """checkpoints/ of the repo, then `-- --checkpoints DIR` arguments, then $FAME_CHECKPOINTS."""
    roots = [REPO / "checkpoints"] + _launch_args("--checkpoints")
    roots += [Path(p) for p in os.environ.get("FAME_CHECKPOINTS", "").split(os.pathsep) if p]
    return roots


def data_roots() -> list[Path]:
    """The only folders the app reads data from: the data home, $FAME_DATA_ROOTS, `-- --data-root DIR`."""
    return datahome.data_roots(extra=_launch_args("--data-root"))


@st.cache_data(ttl=30, show_spinner=False)
def available_checkpoints() -> dict[str, str]:
    return {name: str(path) for name, path in find_checkpoints(checkpoint_roots()).items()}


@st.cache_resource(show_spinner="Opening the checkpoint…", max_entries=4)
def _open_checkpoint(path: str, data_path: str | None, roots_state: tuple | None):
    return fame_core.load(path, data=data_path or None, data_roots=data_roots())


def open_checkpoint(path: str, data_path: str | None):
    """(model, dataset or None). Raises fame_core.FameError with a one-line reason. Data, recorded
    or typed in the sidebar, is read only under the data roots (`data_roots`), sha256-verified
    against the checkpoint's record before it is parsed.

    Cached. A checkpoint that opened without its recorded data is looked at again whenever the
    data roots' listing changes (datahome.roots_state: names, sizes and times of two levels,
    milliseconds), so data fetched meanwhile (`python -m fame_core data download NAME` in a shell)
    is found on the next rerun, without restarting the server. With its data, one cached entry."""
    model, data = _open_checkpoint(path, data_path, None)
    if data is None and not data_path:
        model, data = _open_checkpoint(path, data_path, datahome.roots_state(data_roots()))
        if data is not None:   # found at last: the plain entry opens it from now on, with no listing
            _open_checkpoint.clear(path, data_path, None)
    return model, data


open_checkpoint.clear = _open_checkpoint.clear   # e.g. after the Download button fetched the data


def open_or_message(name: str, path: str, data_path: str | None):
    """(model, data, None) or (None, None, one-line message): a damaged checkpoint is a message
    naming it, never a traceback, and never echoes the content of its files."""
    try:
        model, data = open_checkpoint(path, data_path)
        return model, data, None
    except fame_core.FameError as err:
        return None, None, str(err).splitlines()[0]
    except Exception as err:  # noqa: BLE001 - a damaged file can fail in any reader; say which checkpoint
        return None, None, (f"Checkpoint `{name}` cannot be opened: its files are damaged "
                            f"({type(err).__name__}); choose another one or retrain it.")


@st.cache_data(show_spinner="Ranking every user (one batched pass; cached on disk per checkpoint and split)…",
               max_entries=4)
def cohort_table(path: str, data_path: str | None, split: str):
    """(the cohort table of `fame_core.cohort`, its attrs plus the seconds it took): one table for
    the Cohort page and the case study's user table."""
    import time

    from fame_core import cohort

    model, data = open_checkpoint(path, data_path)
    start = time.perf_counter()
    table = cohort.cohort_table(model, data, split)
    return table, dict(table.attrs, seconds=time.perf_counter() - start)


@st.cache_data(show_spinner=False, max_entries=2)
def users(path: str, data_path: str | None, split: str, k: int):
    """The case study's user table, read from the cohort table (nobody is ranked twice)."""
    table, attrs = cohort_table(path, data_path, split)
    table.attrs.update(attrs)
    return from_cohort(table, open_checkpoint(path, data_path)[1], k)


TABLE_ROWS = 1000   # rows of a user table sent to the browser (filters run over all of them)


@st.cache_data(max_entries=512, show_spinner=False)
def inspect(path: str, data_path: str | None, sequence: tuple, target, top_k: int):
    model, _ = open_checkpoint(path, data_path)
    return fame_core.inspect(model, list(sequence), target=target, top_k=top_k)


def warn_bad_param(key: str, allowed) -> None:
    """A link parameter that no widget can take: say so instead of silently dropping it."""
    value = st.query_params.get(key)
    if value is not None and value not in allowed:
        shown = ", ".join(list(allowed)[:6]) + (" …" if len(allowed) > 6 else "")
        st.warning(f"The link's `{key}={value[:40]}` is not available here (choose from: {shown}); using the default.")


def count_param(key: str, lo: int, hi: int, default: int) -> int:
    """A whole-number URL parameter, checked at the edge: a bad one (inf, nan, 1e309, abc, out
    of range) gives one visible line, and the URL gets the value used. Its widget is made with
    `count_input`, which keeps URL and widget equal."""
    value, message = lists.parse_count(st.query_params.get(key), lo, hi, default, key)
    if message:
        st.warning(message)
    if key in st.query_params and st.query_params.get(key) != str(value):
        st.query_params[key] = str(value)
    return value


def count_input(where, label: str, key: str, lo: int, hi: int, default: int, **kwargs) -> int:
    """A number box for a checked URL count (see count_param): shows the value actually used
    and writes changes back to the URL."""
    value = count_param(key, lo, hi, default)
    return int(url_widget(where.number_input, key, value, label, min_value=lo, max_value=hi, step=1, **kwargs))


def url_widget(make, key: str, value, *args, **kwargs):
    """`make(*args, key=key, ...)` (a Streamlit widget) kept equal to URL parameter `key`: on a
    new link (or the first run) it shows `value`, the checked value in use, not the raw text of
    the link; a change in the widget is written to the URL."""
    if key not in st.session_state or st.session_state.get(f"{key}:from_url") != st.query_params.get(key):
        st.session_state[key] = value
    st.session_state[f"{key}:from_url"] = st.query_params.get(key)
    return make(*args, key=key, on_change=lambda: set_url_value(key, st.session_state[key]), **kwargs)


def set_url_value(key: str, value) -> None:
    """Set widget `key` and its URL parameter together (from a callback, e.g. a click on a map)."""
    text = str(int(value)) if isinstance(value, float) and float(value).is_integer() else str(value)
    st.session_state[key] = value
    st.query_params[key] = text
    st.session_state[f"{key}:from_url"] = text


def app_words(message: str) -> str:
    """A fame_core message in the app's terms: the CLI's `--mirror URL` is `$FAME_MIRROR` here (read by
    every download the app runs), since the app has no such flag."""
    return message.replace("pass --mirror", "set $FAME_MIRROR=http://host[:port] (a mirror of the download "
                                            "addresses) in the environment that starts the app")


def model_summary(model) -> str:
    """One line about a model: kind, sizes and its recorded test metrics (the sidebar, Compare)."""
    cfg = model.config
    text = f"**{cfg.model.upper()}** · H={cfg.n_heads} · N={cfg.n_experts} · d={cfg.d} · L={cfg.n_layers}"
    test = model.provenance.training.get("test") if model.provenance else None
    if isinstance(test, dict) and all(isinstance(test.get(k), (int, float)) for k in ("HR@10", "NDCG@10", "NDCG@20")):
        text += "  \nTest (history masked): " + " · ".join(f"{k} {test[k]:.4f}" for k in ("HR@10", "NDCG@10", "NDCG@20"))
    return text


# ---- slow analyses: cached in memory and on disk per checkpoint fingerprint ------------------------

def _disk_key(path: str, data_path: str | None, name: str) -> str:
    return name if not data_path else f"{name}-{hashlib.sha256(str(data_path).encode()).hexdigest()[:8]}"


def checks_cached(path: str, data_path: str | None, facet: str, gate_only: bool = False) -> bool:
    """True when the facet checks of this checkpoint are on disk (reading them is instant);
    gate_only: those of gate and experts alone (planted or real-data checks)."""
    from fame_core import verdicts

    model, data = open_checkpoint(path, data_path)
    if data is None or not verdicts.is_cached(model, data):      # the badges read the verdicts (issue 41)
        return False
    return gate_only or cache.is_cached(path, _disk_key(path, data_path, "alignment"))


@st.cache_data(show_spinner="Measuring how each head separates the item facets…", max_entries=8)
def alignment(path: str, data_path: str | None):
    from fame_core import facets

    model, data = open_checkpoint(path, data_path)
    return cache.cached_json(path, _disk_key(path, data_path, "alignment"),
                             lambda: facets.head_alignment(model, data, max_items=MAP_ITEMS // 2))


@st.cache_data(show_spinner="Projecting the item embeddings to 2-d…", max_entries=32)
def projection(path: str, data_path: str | None, representation: str, method: str):
    """(n_items+1, 2) map coordinates of one representation (NaN for items outside the drawn
    sample; row 0 unused); cached in memory and (UMAP) on disk, so recolouring is instant."""
    import numpy as np

    from fame_core import facets

    model, _ = open_checkpoint(path, data_path)

    def compute():
        X = facets.item_representations(model)[representation]
        n = X.shape[0] - 1
        items = np.arange(1, n + 1)
        if n > MAP_ITEMS:
            items = np.sort(np.random.default_rng(0).choice(items, MAP_ITEMS, replace=False))
        coords = np.full((n + 1, 2), np.nan)
        coords[items] = facets.project(X[items], method)
        return coords

    if method == "pca":
        return compute()   # under a second: not worth a file
    return cache.cached_array(path, f"projection-{method}-{representation}", compute)


@st.cache_data(show_spinner="Checking gate and experts against the planted facets…", max_entries=8)
def planted_checks(path: str, data_path: str | None):
    from fame_core import facets

    model, data = open_checkpoint(path, data_path)
    if data.truth is None:
        return None
    return cache.cached_json(path, _disk_key(path, data_path, "planted_checks"), lambda: facets.planted_checks(model, data))


@st.cache_data(show_spinner="Checking gate and experts against the heads' rankings and the item facet…", max_entries=8)
def real_checks(path: str, data_path: str | None, facet: str):
    from fame_core import facets

    model, data = open_checkpoint(path, data_path)
    return cache.cached_json(path, _disk_key(path, data_path, f"real_checks-{facet}"),
                             lambda: facets.real_checks(model, data, facet))


# ---- figures: drawn by fame_core.export when a download is clicked ------------------------------------

def figure_catalogue(insp):
    from fame_core.catalogue import figure_catalogue as catalogue

    return catalogue(insp)


def figure_file(insp, spec, label, k: int, title: str, options: dict, fmt: str, meta: dict) -> bytes:
    """One file of one figure: pdf/svg/png, its numbers (csv) or its sidecar (json)."""
    import json

    from fame_core import export

    fig, table = export.build_figure(insp, spec, label, k, title, **options)
    if fmt == "csv":
        return table.to_csv().encode()
    if fmt == "json":
        return (json.dumps(export.sidecar(fig, dict(meta, **spec.meta(), **options)), indent=2, default=str) + "\n").encode()
    return export.figure_bytes(fig, fmt)


@st.cache_data(max_entries=256, show_spinner=False)
def figure_svg(path: str, data_path: str | None, sequence: tuple, target, top_k: int, figure: str, head: int = 0,
               scale: str = "unit") -> str:
    """One case-study figure as SVG text (figure: gates, experts, router): what the exported
    figure shows (fame_core.export's Heatmap: values, ticks, anchored colour scale, uniform level),
    written by fame_core.svg in milliseconds, so a user switch does not wait on matplotlib. A static
    picture is drawn by the browser at once; the plotly chart takes seconds more."""
    from fame_core import export, svg

    insp = inspect(path, data_path, sequence, target, top_k)
    build = {"gates": lambda: svg.gates(insp),
             "experts": lambda: svg.heatmap(export.expert_attention_heatmap(insp, head, scale=scale)),
             "router": lambda: svg.heatmap(export.router_heatmap(insp, head, scale=scale))}
    if figure not in build:
        raise ValueError(f"figure must be one of {sorted(build)}, not {figure!r}")
    return build[figure]()


# ---- one download row for every view -----------------------------------------------------------------

MIME = {"pdf": "application/pdf", "svg": "image/svg+xml", "png": "image/png", "csv": "text/csv",
        "json": "application/json", "zip": "application/zip"}


def zip_files(files, folder: str) -> bytes:
    """A zip of `files`, each under `folder/` (unpacked, they stay together in one named folder)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f"{folder}/{Path(f).name}")
    return buf.getvalue()


def download_row(stem: str, render, formats=("pdf", "svg", "png", "csv"), extra=(), prefix: str = "", key: str = "dl"):
    """Download buttons in one row: `render(fmt) -> bytes` for each format (called only on a
    click), then `extra` (label, data or callable, file name) buttons."""
    from functools import partial

    cols = st.columns(len(formats) + len(extra))
    for col, fmt in zip(cols, formats):
        col.download_button(f"{prefix}{fmt.upper()}", partial(render, fmt), file_name=f"{stem}.{fmt}", mime=MIME[fmt],
                            key=f"{key}_{fmt}")
    for col, (label, data, file_name) in zip(cols[len(formats):], extra):
        col.download_button(label, data, file_name=file_name, mime=MIME[file_name.rsplit(".", 1)[-1]],
                            key=f"{key}_{file_name.rsplit('.', 1)[-1]}_{label}")


__all__ = ["PageContext", "context", "scales"]
