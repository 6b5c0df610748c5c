"""The app's server: `streamlit run app/serve.py [-- --checkpoints DIR] [--warm NAME ...]`.

It serves app/streamlit_app.py exactly as `streamlit run app/streamlit_app.py` does, but first
warms the process in an st.App lifespan hook: the heavy modules (torch, fame_core, pandas,
plotly, matplotlib) are imported, the default checkpoint is opened into the app's resource cache
and one case study is computed and drawn, all before the server answers. So the first visitor
does not wait for them; a warm-up that fails is skipped (the page then reports the problem).
`--warm NAME` (repeatable, at most 3) opens further checkpoints the same way, e.g. the one a
lab's links point at.
"""

import sys

from contextlib import asynccontextmanager

import streamlit as st


def warmed_names(argv) -> list[str]:
    """The checkpoints to open before answering: the default, then each `--warm NAME` (the
    app's resource cache keeps 4 open)."""
    names = []
    for i, arg in enumerate(argv):
        if arg == "--warm" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif arg.startswith("--warm="):
            names.append(arg.split("=", 1)[1])
    return list(dict.fromkeys(names[:3]))


def warm_up() -> None:
    import charts  # noqa: F401  (plotly)
    import session
    from fame_core import export, lists

    found = session.available_checkpoints()
    for name in [session.DEFAULT_CHECKPOINT] + warmed_names(sys.argv[1:]):
        if name not in found:
            continue
        model, data, problem = session.open_or_message(name, found[name], None)
        if model is None or data is None:
            continue
        seq, target = data.example(data.user_row(lists.default_user(data)))
        insp = session.fame_core.inspect(model, seq, target=target, top_k=lists.TOP_K)
        for fig in (export.gates_figure(insp)[0], export.expert_attention_figure(insp, 0)[0],
                    export.router_figure(insp, 0)[0]):
            export.figure_bytes(fig, "svg")


@asynccontextmanager
async def warm(app):
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - a warm-up is an optimisation; the page reports real problems itself
        pass
    yield


app = st.App("streamlit_app.py", lifespan=warm)
