"""FAME facet workbench: `streamlit run app/streamlit_app.py [-- --checkpoints DIR]`.

The sidebar picks a checkpoint (any directory under the configured roots) and, where the
checkpoint's data set is not on disk, asks for its path. Pages read the choice as a typed
`session.PageContext` (`session.context()`). The checkpoint is part of the URL, so a view can be
shared.
"""

import streamlit as st

import session

# an emoji icon is drawn by the browser itself; a :material/...: favicon is fetched from fonts.gstatic.com,
# the page's one request to an outside host (an error in the console of an offline lab machine)
st.set_page_config(page_title="FAME facet workbench", page_icon="🔎", layout="wide")

page = st.navigation([st.Page("views/case_study.py", title="Case study", icon=":material/person_search:", default=True),
                      st.Page("views/facet_explorer.py", title="Facet explorer", icon=":material/scatter_plot:",
                              url_path="facets"),
                      st.Page("views/cohort.py", title="Cohort", icon=":material/groups:", url_path="cohort"),
                      st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
                      st.Page("views/interventions.py", title="Interventions", icon=":material/science:",
                              url_path="interventions")])
on_compare = page.url_path == "compare"    # Compare opens its own two checkpoints (shown in the sidebar there)
checkpoints = session.available_checkpoints()
names = list(checkpoints)
with st.sidebar:
    st.title("FAME workbench")
    if not names:
        st.error("No checkpoint found under " + ", ".join(str(r) for r in session.checkpoint_roots()) +
                 ". Train one with `python -m fame_core train --out checkpoints/NAME`.")
        st.stop()
    session.warn_bad_param("checkpoint", names)
    default = names.index(session.default_checkpoint(names))
    name = st.selectbox("Checkpoint", names, index=default, key="checkpoint", bind="query-params",
                        help="Directories under checkpoints/, `-- --checkpoints DIR` or $FAME_CHECKPOINTS")
    path = checkpoints[name]
    data_path = st.session_state.get(f"data_path:{name}") or None
    model, data, problem = session.open_or_message(name, path, data_path)
    if problem and data_path:      # the typed path was refused: say why, open the model alone, keep the box
        st.error(f"Data set path: {problem}")
        data_path = None
        model, data, problem = session.open_or_message(name, path, None)
    if problem:
        st.error(problem)
    if model is not None and data is None:
        record = model.provenance.dataset
        st.warning(f"Data set **{record.get('name')}** is not at its recorded path `{record.get('spec')}`. "
                   "The model opens alone (hand-made sequences only); give the data file for users and labels.")
        st.caption(session.datahome.missing_message(record, session.data_roots()))
        offer = session.datahome.download_offer(record)
        if offer and st.button(f"Download {offer[0]}{session.datahome.size_text(offer[1])}", key="download"):
            bar = st.progress(0.0, text=f"Downloading {offer[0]}…")
            try:
                session.datahome.fetch_recorded(record, on_progress=lambda got, total: bar.progress(
                    min(1.0, got / total) if total else 0.0, text=f"Downloading {offer[0]}: {got / 1e6:.1f} MB"))
                session.open_checkpoint.clear()
                st.rerun()
            except session.fame_core.FameError as err:
                bar.empty()             # a failed download leaves no progress bar behind
                st.error(session.app_words(str(err)))
        st.text_input("Data set path", key=f"data_path:{name}", placeholder="/path/to/Beauty.txt",
                      help="A file under the data roots (the data home, $FAME_DATA_ROOTS, `-- --data-root DIR`), "
                           "opened only when its sha256 is the one the checkpoint records")
    if model is not None and on_compare:
        st.caption("Compare does not use this checkpoint: it compares the two chosen on the page (below); "
                   "this one opens the other pages.")
    elif model is not None:
        st.caption(session.model_summary(model) +
                   (f"  \nData: **{data.name}** ({data.n_users:,} users, {data.n_items:,} items)" if data is not None else ""))

if model is not None:
    st.session_state["ctx"] = session.PageContext(name=name, path=path, data_path=data_path, model=model, data=data)
if model is None:
    st.stop()
page.run()
