"""What every page shares: the configured checkpoint roots, cached models and tables, and the
checks that turn a bad link or a missing data set into a friendly message.

Presentation glue only; every number comes from fame_core.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

import fame_core  # installed by `pip install -r requirements.txt` (an editable install of this clone)
from fame_core import datahome
from fame_core.checkpoint import find_checkpoints
from fame_core.users import user_table

REPO = Path(__file__).resolve().parents[1]

DEFAULT_CHECKPOINT = "demo"


def checkpoint_roots() -> list[Path]:
    """checkpoints/ of the repo, then `-- --checkpoints DIR` arguments, then $FAME_CHECKPOINTS."""
    roots = [REPO / "checkpoints"]
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--checkpoints" and i + 1 < len(argv):
            roots.append(Path(argv[i + 1]))
        elif arg.startswith("--checkpoints="):
            roots.append(Path(arg.split("=", 1)[1]))
    roots += [Path(p) for p in os.environ.get("FAME_CHECKPOINTS", "").split(os.pathsep) if p]
    return roots


@st.cache_data(ttl=30, show_spinner=False)
def available_checkpoints() -> dict[str, str]:
    return {name: str(path) for name, path in find_checkpoints(checkpoint_roots()).items()}


@st.cache_resource(show_spinner="Opening the checkpoint…", max_entries=4)
def open_checkpoint(path: str, data_path: str | None):
    """(model, dataset or None). Raises fame_core.FameError with a one-line reason. Recorded data
    is read only under the data roots (the data home and $FAME_DATA_ROOTS), sha256-verified."""
    return fame_core.load(path, data=data_path or None, data_roots=None if data_path else datahome.data_roots())


@st.cache_data(show_spinner="Ranking every user under gated and concatenated merging…", max_entries=8)
def users(path: str, data_path: str | None, split: str, k: int):
    model, data = open_checkpoint(path, data_path)
    return user_table(model, data, split=split, k=k)


@st.cache_data(max_entries=512, show_spinner=False)
def inspect(path: str, data_path: str | None, sequence: tuple, target, top_k: int):
    model, _ = open_checkpoint(path, data_path)
    return fame_core.inspect(model, list(sequence), target=target, top_k=top_k)


def warn_bad_param(key: str, allowed) -> None:
    """A link parameter that no widget can take: say so instead of silently dropping it."""
    value = st.query_params.get(key)
    if value is not None and value not in allowed:
        shown = ", ".join(list(allowed)[:6]) + (" …" if len(allowed) > 6 else "")
        st.warning(f"The link's `{key}={value}` is not available here (choose from: {shown}); using the default.")


@st.cache_data(show_spinner="Measuring how each head separates the item facets…", max_entries=8)
def alignment(path: str, data_path: str | None):
    from fame_core.facets import head_alignment

    model, data = open_checkpoint(path, data_path)
    return head_alignment(model, data, max_items=MAP_ITEMS // 2)


MAP_ITEMS = 5000  # items drawn on a map: a fixed random sample beyond this (UMAP of 18k items takes minutes)


@st.cache_data(show_spinner="Projecting the item embeddings to 2-d…", max_entries=32)
def projection(path: str, data_path: str | None, representation: str, method: str):
    """(n_items+1, 2) map coordinates of one representation (NaN for items outside the drawn
    sample; row 0 unused); cached, so recolouring is instant."""
    import numpy as np

    from fame_core.facets import item_representations, project

    model, _ = open_checkpoint(path, data_path)
    X = item_representations(model)[representation]
    n = X.shape[0] - 1
    items = np.arange(1, n + 1)
    if n > MAP_ITEMS:
        items = np.sort(np.random.default_rng(0).choice(items, MAP_ITEMS, replace=False))
    coords = np.full((n + 1, 2), np.nan)
    coords[items] = project(X[items], method)
    return coords


@st.cache_data(show_spinner="Checking gate and experts against the planted facets…", max_entries=8)
def planted_checks(path: str, data_path: str | None):
    from fame_core.facets import planted_checks as checks

    model, data = open_checkpoint(path, data_path)
    return checks(model, data)


@st.cache_data(show_spinner="Checking gate and experts against the heads' rankings and the item facet…", max_entries=8)
def real_checks(path: str, data_path: str | None, facet: str):
    from fame_core.facets import real_checks as checks

    model, data = open_checkpoint(path, data_path)
    return checks(model, data, facet)
