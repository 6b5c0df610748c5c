"""Shared fixtures: small worlds and models that make tests fast on a 2-core CPU."""

from pathlib import Path

import pytest
import torch

from fame_core.data import load_dataset
from fame_core.models import build_model, model_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_WORLD = "synthetic:seed=3,n_users=150,n_items=60,genre=4,actor=6,min_len=4,max_len=12"


def needs_shared(path: str) -> Path:
    """Path of a file of ../shared/data, or skip the test where it is absent."""
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not present")
    return p


def pytest_collection_modifyitems(config, items):
    """Tests by area (`-m app`, `-m browser`, `-m data`, `-m slow`; `-m fast` is marked in each module):
    browser = tests/test_browser*.py; app = a module that drives the app (uses run_app or deep_link);
    data = a module that reads ../shared/data (uses needs_shared); slow = the rest of what is not fast."""
    for item in items:
        module = item.module
        areas = set()
        if module.__name__.split(".")[-1].startswith("test_browser"):
            areas.add("browser")
        if hasattr(module, "run_app") or hasattr(module, "deep_link"):
            areas.add("app")
        if hasattr(module, "needs_shared") or "needs_shared" in getattr(getattr(item, "function", None), "__code__",
                                                                           needs_shared.__code__).co_names:
            areas.add("data")
        if not areas and item.get_closest_marker("fast") is None:
            areas.add("slow")
        for area in areas:
            item.add_marker(getattr(pytest.mark, area))


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory):
    """Tests never read or fill the user's ~/.cache/fame: a fresh, empty data home for the
    session; ../shared/data is a data root, so the app opens the bundled Table-2 checkpoints."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("fame-data")
        mp.setenv("FAME_DATA", str(home))
        mp.setenv("FAME_DATA_ROOTS", str(SHARED_DATA))
        mp.delenv("FAME_MIRROR", raising=False)
        yield home


@pytest.fixture(autouse=True, scope="session")
def _private_disk_cache(tmp_path_factory):
    """Slow analyses cached on disk (fame_core.cache) go to a fresh folder, never ~/.cache/fame:
    a test sees what a first visit sees."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAME_CACHE", str(tmp_path_factory.mktemp("fame-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_world():
    return load_dataset(TINY_WORLD)


def make_model(kind="fame", n_items=30, seed=0, **overrides):
    """A randomly initialised model, with non-trivial LayerNorm and bias parameters so that an
    equation that ignored them would be caught, in eval mode."""
    torch.manual_seed(seed)
    settings = dict(n_items=n_items, d=16, n_layers=2, n_heads=2, max_len=8, dropout=0.0, attn_dropout=0.0)
    if kind == "fame":
        settings["n_experts"] = 3
    cfg = model_config(kind, **{**settings, **overrides})
    model = build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias") or name.startswith("moe.b_Q"):
                p.add_(0.3 * torch.randn_like(p))
            elif name in ("moe.W_Q", "moe.W_exp") or "W_Q" in name:
                p.mul_(20.0)  # sharpen attention and routing so they are far from uniform
    return model.eval()


APP = str(REPO / "app" / "streamlit_app.py")


def run_app(page: str | None = None, **params):
    """The app run headlessly (AppTest) with the given URL parameters, on `page` (views/NAME.py)
    when given; asserts it raised nothing."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def deep_link(page: str, **params):
    """The app opened straight on `page` (views/NAME.py) with the given URL parameters, as a deep
    link does (the page switched to before the first run); asserts it raised nothing."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
