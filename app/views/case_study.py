"""Case study: for one user (or an edited history), what each head recommends, how the gate
weighs the heads, where every expert looks, and gated versus concatenated merging: the paper's
Figure 7, for any user of any checkpoint. URL parameters: checkpoint, user, split, merge, head, k,
scale, interactive, checks.

Order matters: lists, gates, attention and router are drawn first; the facet checks only when
asked for (or at once when this checkpoint's results are on disk already). Gates, attention and
router are static SVG by default, showing what the exported figures show (same values, ticks and
anchored colour scales; written by fame_core.svg in milliseconds, drawn by a browser at once;
plotly's charts take seconds more on a small machine), the plotly charts with `interactive=true`.
"""

import tempfile
from functools import partial

import pandas as pd
import streamlit as st

import charts
import session
from badges import CHECKS_HELP, facet_badges, gate_badge
from fame_core import lists
from fame_core.scales import SCALES
from fame_core.users import gated_wins

ctx = session.context()
model, data, path, data_path, label = ctx.model, ctx.data, ctx.path, ctx.data_path, ctx.label
H, N = ctx.n_heads, ctx.n_experts
MODES = ["gated", "concat"] + [f"head:{h}" for h in range(H)]

st.title("Case study")

# ---- who: a user of the data set, with a table to find one ------------------------------------------
for key, allowed in (("merge", MODES), ("split", ["test", "valid"]), ("scale", list(SCALES))):
    session.warn_bad_param(key, allowed)
session.count_param("head", 0, H - 1, 0)   # a number: checked like k (the URL then names the head shown)
split = st.query_params.get("split") if st.query_params.get("split") in ("test", "valid") else "test"
if data is not None:                 # checked before the box is drawn, so the box shows the user used
    fallback = lists.default_user(data, split)
    asked, problem = st.query_params.get("user"), None
    if asked and not data.has_user(asked):
        problem = f"`user={asked[:40]}` is not a user of data set {data.name}; showing user {fallback}."
    elif asked and len(data.sequences[data.user_row(asked)]) < 3:
        problem = f"`user={asked}` has fewer than 3 items and cannot be split; showing user {fallback}."
    if problem:
        st.warning(problem)
        st.query_params["user"] = str(fallback)    # the link now says what is shown
    used = str(fallback) if problem or not asked else asked
else:                                # no data yet (e.g. before its download): keep the linked user for later
    used = (st.query_params.get("user") or "")[:40]
top = st.columns([2, 1, 1])      # two rows: five controls in one row hid `own` and cut the toggle's label at 1400 px
view = st.columns([1, 1])
user = session.url_widget(top[0].text_input, "user", used, "User id", disabled=data is None,
                          placeholder=f"e.g. {data.user_ids[0]}" if data is not None else "no data set: edit a sequence below")
split = top[1].segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params",
                                 help="test: history = all but the last item; valid: all but the last two") or "test"
k = session.count_input(top[2], "Top k", "k", 1, 100, lists.TOP_K)
scale = view[0].segmented_control("Colour scale", list(SCALES), default="unit", key="scale", bind="query-params",
                                 help="unit: 0..1 (comparable everywhere); shared: 0..max over every head and expert; "
                                      "own: 0..max of each map. The uniform level is marked on every colour bar.") or "unit"
interactive = view[1].toggle("Interactive charts", key="interactive", bind="query-params",
                            help="On: plotly charts, hover for item labels and exact values (seconds more to draw). "
                                 "Off: static figures with the exports' scales and labels, drawn at once.")

seq, target, who = [], None, "hand-made sequence"
if data is None:     # said in the main area: the history below is not the linked user's
    st.info((f"User {used} cannot be shown: " if used else "No user to show: ") +
            f"this checkpoint's data set ({ctx.model.provenance.dataset.get('name')}) is not on disk (see the sidebar). "
            "Showing a hand-made sequence (items 1–5) to edit instead.")
if data is not None:
    user = user if user and data.has_user(user) else fallback
    seq, target = data.example(data.user_row(user), split)
    who = f"user {user}"

    with st.expander("Find users: lengths, hits under gated vs concatenated merging, gates"):
        # ranking every user takes seconds on Amazon-sized data: done when asked, then cached
        if st.toggle("Rank every user", key="show_user_table",
                     help="The target's rank under gated and concatenated merging, gates and lengths of every user"):
            table = session.users(path, data_path, split, k)
            f1, f2, f3, f4 = st.columns(4)
            lo, hi = int(table["length"].min()), int(table["length"].max())
            length = f1.slider("History length", lo, max(hi, lo + 1), (lo, max(hi, lo + 1)))
            only_gated = f2.checkbox(f"Gated hit@{k}, concat miss", help="users like the paper's Sports 230")
            heads = f3.multiselect("Dominant head", list(range(H)), default=list(range(H)))
            entropy = f4.slider("Gate entropy", 0.0, 1.0, (0.0, 1.0), help="0: one head decides; 1: heads weigh equally")
            shown = table[table["length"].between(*length) & table["dominant_head"].isin(heads)
                          & table["gate_entropy"].between(*entropy)]
            if only_gated:
                shown = gated_wins(shown, k)
            s1, s2, _ = st.columns([1, 1, 2])
            order = s1.selectbox("Sort by", ["(data order)", "rank_gated", "rank_concat", "gate_entropy", "gate_max",
                                             "length"], key="user_sort",
                                 help="Sorted over every matching user, before the first rows are listed")
            if order != "(data order)":
                shown = shown.sort_values(order, ascending=not s2.toggle("Descending", key="user_sort_desc"),
                                          kind="stable")

            def pick(users):
                selected = st.session_state["user_table"].selection.rows
                if selected:
                    session.set_url_value("user", str(users[selected[0]]))

            matching = len(shown)
            shown = shown.head(session.TABLE_ROWS)   # a browser table of 10^6 rows would take seconds to send
            st.caption(f"{matching:,} of {len(table):,} users match" +
                       (f"; the first {session.TABLE_ROWS:,} are listed (narrow the filters to see others)"
                        if matching > session.TABLE_ROWS else "") + ". Click a row to open that user.")
            st.dataframe(shown, hide_index=True, height=260, key="user_table", selection_mode="single-row",
                         on_select=partial(pick, shown["user"].tolist()))

# ---- counterfactual editing -------------------------------------------------------------------------
# without a data set there is no history: start from items 1..5, to be edited
original = [int(v) for v in seq] if data is not None else list(range(1, min(5, ctx.config.n_items) + 1))
if st.session_state.get("edit_for") != (ctx.name, who, split):
    st.session_state["edit_for"] = (ctx.name, who, split)
    st.session_state["edit_text"] = ", ".join(map(str, original))
with st.expander("Edit the history (remove, insert or reorder items and see everything change)", expanded=data is None):
    st.text_area("Item ids, oldest first", key="edit_text", height=80)
    if st.button("Reset to the real history", disabled=data is None):
        st.session_state["edit_for"] = None
        st.rerun()
try:
    edited = [int(x) for x in st.session_state["edit_text"].replace("\n", ",").split(",") if x.strip()]
except ValueError:
    st.error("The edited history must be item ids separated by commas; showing the real history.")
    edited = original
bad = [v for v in edited if not 1 <= v <= ctx.config.n_items]
if bad:
    st.error(f"Item {str(bad[0])[:24]} is not an item of this model (ids 1..{ctx.config.n_items}); showing the real history.")
    edited = original
if not edited:
    st.info("Give at least one item id to inspect.")
    st.stop()
is_edited = data is not None and edited != original
sequence = edited

# ---- the history strip ----------------------------------------------------------------------------------
insp = session.inspect(path, data_path, tuple(sequence), target, max(k, lists.TOP_K))
title = f"{who}" + (" (edited)" if is_edited else "")
st.subheader(f"History of {title}")
if is_edited:
    st.badge("edited sequence: counterfactual", color="orange")
last_is_valid = split == "test" and data is not None and not is_edited


def chip(i: int, v: int) -> str:
    text = label(v).replace("[", "(").replace("]", ")")
    return f":{'violet' if last_is_valid and i == len(sequence) - 1 else 'gray'}-badge[{i + 1} · {text}]"


strip = " → ".join(chip(i, v) for i, v in enumerate(sequence))
st.markdown(strip + (f" ⟹ :red-badge[{lists.TARGET_MARK} target · {label(target)}]" if target is not None else ""))
if last_is_valid:
    st.caption("Violet: the validation target (the last input item on the test split). Red: the test target.")
if insp.dropped:
    st.caption(f"The model sees the newest {ctx.config.max_len} items; {insp.dropped} older ones are not used.")
note = lists.target_note(insp)
if note:
    st.info(note)
ranks = lists.target_ranks(insp)

# ---- per-head lists, gates, merged list: one table, aligned rank by rank ----------------------------------
st.subheader("What each head recommends")
st.markdown(" · ".join(
    f"**Head {h}** gate {insp.gates[h]:.3f}" + (f", target rank {ranks[f'head:{h}']}" if ranks and ranks[f"head:{h}"] else "")
    for h in range(H)))
# a row of its own: in a quarter column the last modes (head:1) were scrolled out of sight
merge = st.segmented_control("Merged list", MODES, default="gated", key="merge", bind="query-params") or "gated"
rank = f" · target rank {ranks[merge]}" if ranks and ranks[merge] else ""
st.markdown(f"**{merge}**{rank}")
shown_modes = [f"head:{h}" for h in range(H)] + [merge]
st.table(lists.shown_lists(insp, k, label, shown_modes))
bias_note = lists.cluster_bias_note(model)
if bias_note:
    st.caption(bias_note)
st.caption(f"{lists.TARGET_MARK} the target · {lists.SHARED_MARK} in more than one head's top {k} · "
           "history items are excluded from every list.")
st.page_link("views/facet_explorer.py", label="Are these heads facets (genre, brand, actor…)? Measured, with controls, "
             "in the Facet explorer — not assumed here.", icon=":material/scatter_plot:")

g1, g2 = st.columns([1, 1])
figure = partial(session.figure_svg, path, data_path, tuple(sequence), target, max(k, lists.TOP_K))
if interactive:
    g1.plotly_chart(charts.gates_chart(insp.gates), key="gates_chart")
else:
    g1.image(figure("gates"), alt="Gate weight of each head", width=380)
temperature_note = lists.gate_temperature_note(model)
if temperature_note:
    g1.caption(temperature_note)
gate_slot = g1.empty()   # filled at the end of the page: the checks, when asked for, run below
if ranks:
    g2.markdown("**Target rank under each merge mode**")
    g2.table(pd.DataFrame({"merge": MODES, "target rank": [ranks[m] if ranks[m] else "in history" for m in MODES],
                           f"in top {k}": ["yes" if ranks[m] and ranks[m] <= k else "" for m in MODES]}).set_index("merge"))

# ---- attention and routing ---------------------------------------------------------------------------
st.subheader("Where the experts look")
st.caption("For each head: every expert's attention from the last position over the history (left) and the "
           "router's weight of each expert at every position (right). Colours: 0.." +
           ("1" if scale == "unit" else "the largest weight" + (" of all heads and experts" if scale == "shared" else " of each map"))
           + "; the uniform level (1/L, 1/N) is marked on each colour bar. " +
           ("Hover for item labels and exact values." if interactive else
            "Positions and item ids as in the history above; switch on *Interactive charts* to hover for labels "
            "and exact values, or download the figure's CSV below."))
for h in range(H):
    a1, a2 = st.columns([3, 2])
    if interactive:
        a1.plotly_chart(charts.expert_attention_chart(insp, h, label, scale), key=f"attention_chart_{h}")
        a2.plotly_chart(charts.router_chart(insp, h, label, scale), key=f"router_chart_{h}")
    else:
        a1.image(figure("experts", h, scale), alt=f"Head {h}: expert attention from the last position", width="stretch")
        a2.image(figure("router", h, scale), alt=f"Head {h}: router weights", width="stretch")
m1, m2, _ = st.columns([1, 1, 2])
head = int(m1.segmented_control("Head", [str(h) for h in range(H)], default="0", key="head", bind="query-params") or 0)
expert = m2.selectbox("Expert", list(range(N)), key="expert")
if st.toggle("Show the full positions × positions map of this head and expert"):
    st.plotly_chart(charts.attention_map_chart(insp, head, expert, label, scale), key="attention_map")
    st.caption("Grey: " + charts.MASK_NOTE.split(";")[0] + ".")

# ---- exports --------------------------------------------------------------------------------------------
st.subheader("Export for papers")
meta = {"checkpoint": ctx.name, "checkpoint_path": path, "dataset": data.name if data is not None else None,
        "user": user if data is not None else None, "split": split, "edited": is_edited,
        "sequence": [int(v) for v in insp.sequence], "target": target, "merge": merge, "top_k": k, "scale": scale,
        "gate_temperature": model.gate_temperature}
e1, e2, e3, e4 = st.columns([3, 1, 1, 1])
specs = session.figure_catalogue(insp)
spec = e1.selectbox("Figure", specs, format_func=lambda s: s.title, key="export_figure")
rule = e2.selectbox("Labels", list(lists.LABEL_RULES), index=1, key="export_labels",
                    help="ids: item ids only; short: cut at 28 characters with '…'; full: wrapped, never cut")
width = e3.selectbox("Width", ["double", "single"], key="export_width", help="double column 7 in; single column 3.3 in")
font = e4.number_input("Font (pt)", min_value=4.0, max_value=14.0, value=7.0 if width == "double" else 6.0, step=0.5,
                       key="export_font")
options = dict(scale=scale, labels=rule, width=width, font_size=font)
stem = f"fame_{ctx.slug}_{who.replace(' ', '')}_{spec.stem}"


def render(fmt: str) -> bytes:
    return session.figure_file(insp, spec, label, k, f"Case study: {title}", options, fmt, meta)


bundle = f"fame_{ctx.slug}_{who.replace(' ', '')}_figures"   # the checkpoint in the zip's name and its folder


def everything() -> bytes:
    from fame_core import export

    with tempfile.TemporaryDirectory() as tmp:
        files = export.export_all(insp, tmp, dict(meta, title=f"Case study: {title}"), label, k=k, **options)
        return session.zip_files(files, bundle)


session.download_row(stem, render, formats=("pdf", "svg", "png", "csv", "json"),
                     extra=[("All figures (zip)", everything, f"{bundle}.zip")])
st.caption("PDF and SVG are vector and editable (cells as rectangles, text as text; PDF fonts TrueType); PNG is "
           "300 dpi. The JSON sidecar says what the figure shows (colour scale, masked cells, full labels); CSV "
           "holds its numbers. The CLI's `export` draws the same figures with the same defaults.")

# ---- facet checks: after everything else, on request (instant when on disk) -------------------------------
if data is not None and data.facets:
    facet = next(iter(data.facets))
    st.subheader("Are the heads, gate and experts facets?")
    cached = session.checks_cached(path, data_path, facet)
    if st.toggle("Check heads, gate and experts against item facets", value=cached, key="checks",
                 bind="query-params", help=CHECKS_HELP + " Results are kept on disk per checkpoint."):
        st.markdown(f"**Specialisation checks** ({facet}) " + " ".join(facet_badges(model, path, data_path, facet)))
    else:
        st.caption("Not measured yet for this checkpoint: switch on to run the checks (seconds on small catalogues, "
                   "about a minute on Amazon-sized ones; kept on disk afterwards).")
gate_slot.markdown(gate_badge(model, path, data_path, data), help="Is this gate informative? " + CHECKS_HELP)

# ---- what if: interventions and counterfactual histories (app/views/what_if.py) -------------------------
from views.what_if import what_if_panel  # noqa: E402

with st.expander("What if … (knock out a head or an expert, set the router or the gate, or edit the history to a goal)"):
    what_if_panel(ctx, sequence, target, k)
