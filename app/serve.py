"""The app's server: `streamlit run app/serve.py [-- --checkpoints DIR] [--warm NAME ...]`.

It serves app/streamlit_app.py exactly as `streamlit run app/streamlit_app.py` does, but first
warms the process in an st.App lifespan hook: the heavy modules (torch, fame_core, pandas,
plotly, matplotlib) are imported, the default checkpoint is opened into the app's resource cache
and one case study is computed and drawn, all before the server answers. So the first visitor
does not wait for them; a warm-up that fails is skipped (the page then reports the problem).
`--warm NAME` (repeatable; four checkpoints in all) opens further checkpoints the same way,
e.g. the one a lab's links point at. Each skipped warm-up is one `warning:` line on stderr.
"""

import logging
import sys
from contextlib import asynccontextmanager

import streamlit as st


def warmed_names(argv, default: str) -> list[str]:
    """The checkpoints to open before answering: the sidebar's default, then each `--warm NAME`
    (duplicates dropped; at most 4 in all, what the app's resource cache keeps open)."""
    names = [default]
    for i, arg in enumerate(argv):
        if arg == "--warm":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                warn("--warm needs a checkpoint name, e.g. --warm sports-fame")
            else:
                names.append(argv[i + 1])
        elif arg.startswith("--warm="):
            names.append(arg.split("=", 1)[1])
    return list(dict.fromkeys(names))[:4]


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def warm_up(argv=None) -> list[str]:
    """Open and draw one case study of each checkpoint to warm, through the app's own cached
    functions (the runtime exists during the lifespan hook, so the first visitor's page finds
    them in the cache). Returns the names warmed; each failure is one warning line."""
    import charts  # noqa: F401  (plotly)
    import session
    from fame_core import lists

    found = session.available_checkpoints()
    default = session.default_checkpoint(list(found))
    warmed = []
    for name in warmed_names(sys.argv[1:] if argv is None else argv, default) if default else []:
        if name not in found:
            warn(f"--warm {name}: no such checkpoint (found: {', '.join(found)})")
            continue
        model, data, problem = session.open_or_message(name, found[name], None)
        if problem or data is None:
            warn(f"warm-up of {name} skipped: {problem or 'its data set is not on disk'}")
            continue
        seq, target = data.example(data.user_row(lists.default_user(data, "test")), "test")
        sequence = tuple(int(v) for v in seq)
        session.inspect(found[name], None, sequence, target, lists.TOP_K)       # as the page asks
        session.figure_svg(found[name], None, sequence, target, lists.TOP_K, "gates")
        for h in range(model.config.n_heads):
            for figure in ("experts", "router"):
                session.figure_svg(found[name], None, sequence, target, lists.TOP_K, figure, h, "unit")
        warmed.append(name)
    return warmed


class _NoBareModeWarning(logging.Filter):
    """Drops Streamlit's "missing ScriptRunContext!" line: the warm-up calls the app's cached
    functions outside a script run on purpose (their spinners find no page to draw on), and the
    line was printed on every start. Attached during the warm-up only; other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "missing ScriptRunContext" not in record.getMessage()


@asynccontextmanager
async def warm(app):
    logger, quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context"), _NoBareModeWarning()
    logger.addFilter(quiet)
    try:
        warm_up()
    except Exception as err:  # noqa: BLE001 - a warm-up is an optimisation: the server starts regardless
        warn(f"warm-up failed ({type(err).__name__}: {err}); the server starts cold")
    finally:
        logger.removeFilter(quiet)
    yield


app = st.App("streamlit_app.py", lifespan=warm)
