"""Case study: for one user (or an edited history), what each head recommends, how the gate
weighs the heads, where every expert looks, and gated versus concatenated merging: the paper's
Figure 7, for any user of any checkpoint. URL parameters: checkpoint, user, split, merge, head, k.
"""

import io
import json
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

import charts
import session
from badges import CHECKS_HELP, facet_badges

ctx = st.session_state["ctx"]
model, data, path, data_path = ctx["model"], ctx["data"], ctx["path"], ctx["data_path"]
cfg = model.config
H, N = cfg.n_heads, cfg.n_experts
MODES = ["gated", "concat"] + [f"head:{h}" for h in range(H)]
label = data.label if data is not None else (lambda item: f"item {item}")

st.title("Case study")

# ---- who: a user of the data set, with a table to find one ------------------------------------------
for key, allowed in (("merge", MODES), ("head", [str(h) for h in range(H)]), ("split", ["test", "valid"])):
    session.warn_bad_param(key, allowed)
top = st.columns([2, 1, 1])
user = top[0].text_input("User id", key="user", bind="query-params",
                         placeholder=f"e.g. {data.user_ids[0]}" if data is not None else "no data set: edit a sequence below",
                         disabled=data is None)
split = top[1].segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params",
                                 help="test: history = all but the last item; valid: all but the last two") or "test"
k = int(top[2].number_input("Top k", min_value=1, max_value=100, value=20, key="k", bind="query-params"))

seq, target, who = [], None, "hand-made sequence"
if data is not None:
    rows_ok = data.splittable_rows()
    if user and not data.has_user(user):
        st.warning(f"User `{user}` is not in data set {data.name}; showing user {data.user_ids[rows_ok[0]]}.")
        user = ""
    if user and len(data.sequences[data.user_row(user)]) < 3:
        st.warning(f"User `{user}` has fewer than 3 items and cannot be split; showing user {data.user_ids[rows_ok[0]]}.")
        user = ""
    user = user or data.user_ids[rows_ok[0]]
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
                shown = shown[shown[f"hit_gated@{k}"] & ~shown[f"hit_concat@{k}"]]

            def pick(users):
                selected = st.session_state["user_table"].selection.rows
                if selected:
                    st.session_state["user"] = users[selected[0]]

            st.caption(f"{len(shown):,} of {len(table):,} users. Click a row to open that user.")
            st.dataframe(shown, hide_index=True, height=260, key="user_table", selection_mode="single-row",
                         on_select=partial(pick, shown["user"].tolist()))

# ---- counterfactual editing -------------------------------------------------------------------------
# without a data set there is no history: start from items 1..5, to be edited
original = [int(v) for v in seq] if data is not None else list(range(1, min(5, cfg.n_items) + 1))
if st.session_state.get("edit_for") != (ctx["name"], who, split):
    st.session_state["edit_for"] = (ctx["name"], who, split)
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
bad = [v for v in edited if not 1 <= v <= cfg.n_items]
if bad:
    st.error(f"Item {bad[0]} is not an item of this model (ids 1..{cfg.n_items}); showing the real history.")
    edited = original
if not edited:
    st.info("Give at least one item id to inspect.")
    st.stop()
is_edited = data is not None and edited != original
sequence = edited

# ---- the history strip ----------------------------------------------------------------------------------
insp = session.inspect(path, data_path, tuple(sequence), target, k)
title = f"{who}" + (" (edited)" if is_edited else "")
st.subheader(f"History of {title}")
if is_edited:
    st.badge("edited sequence: counterfactual", color="orange")


def chip(i: int, v: int) -> str:
    text = label(v).replace("[", "(").replace("]", ")")[:40]
    colour = "violet" if (split == "test" and data is not None and not is_edited and i == len(sequence) - 1) else "gray"
    return f":{colour}-badge[{i + 1} · {text}]"


strip = " → ".join(chip(i, v) for i, v in enumerate(sequence))
st.markdown(strip + (f" ⟹ :red-badge[target · {label(target)[:40]}]" if target is not None else ""))
if split == "test" and data is not None and not is_edited:
    st.caption("Violet: the validation target (the last input item on the test split). Red: the test target.")
if insp.dropped:
    st.caption(f"The model sees the newest {cfg.max_len} items; {insp.dropped} older ones are not used.")

# ---- per-head lists, gates, merged list ---------------------------------------------------------------
st.subheader("What each head recommends")
head_sets = [set(insp.top[f"head:{h}"][:k].tolist()) for h in range(H)]
shared = {v for v in set().union(*head_sets) if sum(v in s for s in head_sets) > 1}


def ranked_list(mode: str) -> pd.DataFrame:
    items = insp.top[mode][:k]
    marks = [("🎯" if v == target else "") + ("●" if v in shared else "") for v in items]
    return pd.DataFrame({"#": range(1, len(items) + 1), " ": marks, "item": items, "label": [label(v) for v in items]})


def highlight(df: pd.DataFrame):
    return df.style.apply(lambda r: ["background-color: #fde0dd" if "🎯" in r[" "] else "" for _ in r], axis=1)


cols = st.columns(H + 1)
for h in range(H):
    rank = f" · target rank {insp.target_rank[f'head:{h}']}" if insp.target_rank else ""
    cols[h].markdown(f"**Head {h}** · gate {insp.gates[h]:.3f}{rank}")
    cols[h].table(highlight(ranked_list(f"head:{h}")).hide(axis="index"))
with cols[H]:
    merge = st.segmented_control("Merged list", MODES, default="gated", key="merge", bind="query-params") or "gated"
    rank = f" · target rank {insp.target_rank[merge]}" if insp.target_rank else ""
    st.markdown(f"**{merge}**{rank}")
    st.table(highlight(ranked_list(merge)).hide(axis="index"))
st.caption("● recommended by more than one head · 🎯 the target · history items are excluded from every list.")
st.page_link("views/facet_explorer.py", label="Are these heads facets (genre, brand, actor…)? Measured, with controls, "
             "in the Facet explorer — not assumed here.", icon="🗺️")
if data is not None and data.facets:
    # On by default where the checks take a second or two (small catalogues); one click elsewhere.
    if st.toggle("Check heads, gate and experts against item facets", value=data.n_items <= 5000, key="checks",
                 bind="query-params", help=CHECKS_HELP):
        facet = next(iter(data.facets))
        st.markdown(f"**Specialisation checks** ({facet}) " + " ".join(facet_badges(model, path, data_path, facet)))

g1, g2 = st.columns([1, 1])
g1.plotly_chart(charts.gates_chart(insp.gates), key="gates_chart")
if insp.target_rank:
    ranks = pd.DataFrame({"merge": MODES, "target rank": [insp.target_rank[m] for m in MODES],
                          f"in top {k}": ["yes" if insp.target_rank[m] <= k else "" for m in MODES]})
    g2.markdown("**Target rank under each merge mode**")
    g2.dataframe(ranks, hide_index=True)

# ---- attention and routing ---------------------------------------------------------------------------
st.subheader("Where the experts look")
st.caption("For each head: every expert's attention from the last position over the history (left) and the "
           "router's weight of each expert at every position (right). Hover for item labels and exact values.")
for h in range(H):
    a1, a2 = st.columns([3, 2])
    a1.plotly_chart(charts.expert_attention_chart(insp, h, label), key=f"attention_chart_{h}")
    a2.plotly_chart(charts.router_chart(insp, h, label), key=f"router_chart_{h}")
m1, m2, _ = st.columns([1, 1, 2])
head = int(m1.segmented_control("Head", [str(h) for h in range(H)], default="0", key="head", bind="query-params") or 0)
expert = m2.selectbox("Expert", list(range(N)), key="expert")
if st.toggle("Show the full positions × positions map of this head and expert"):
    st.plotly_chart(charts.attention_map_chart(insp, head, expert, label), key="attention_map")

# ---- exports --------------------------------------------------------------------------------------------
st.subheader("Export for papers")
meta = {"checkpoint": ctx["name"], "checkpoint_path": path, "dataset": data.name if data is not None else None,
        "user": user if data is not None else None, "split": split, "edited": is_edited,
        "sequence": [int(v) for v in insp.sequence], "target": target, "merge": merge, "top_k": k}
figures = ["Case study (Figure 7 layout)", "Gates"]
for h in range(H):
    figures += [f"Expert attention, head {h}", f"Router weights, head {h}"]
    figures += [f"Attention map, head {h}, expert {n}" for n in range(N)]


def build(which: str):
    """(figure, numbers) for one export; matplotlib is imported only when a figure is asked for."""
    from fame_core import export

    if which.startswith("Case study"):
        return export.case_study_figure(insp, min(k, 20), label, title=f"Case study: {title}")
    if which == "Gates":
        return export.gates_figure(insp)
    numbers = [int(t) for t in which.replace(",", " ").split() if t.isdigit()]
    if which.startswith("Expert attention"):
        return export.expert_attention_figure(insp, numbers[0], label)
    if which.startswith("Router"):
        return export.router_figure(insp, numbers[0], label)
    return export.attention_map_figure(insp, numbers[0], numbers[1], label)


which = st.selectbox("Figure", figures, key="export_figure")
stem = f"fame_{ctx['name'].replace('/', '_')}_{who.replace(' ', '')}_{which.split(' (')[0].lower().replace(', ', '_').replace(' ', '_')}"
sidecar = dict(meta, figure=which, head=head if "head" in which else None)


def render(fmt: str) -> bytes:
    from fame_core import export

    fig, table = build(which)
    if fmt == "csv":
        return table.to_csv().encode()
    return export.figure_bytes(fig, fmt)


def everything() -> bytes:
    from fame_core import export

    with tempfile.TemporaryDirectory() as tmp:
        files = export.export_all(insp, tmp, dict(meta, title=f"Case study: {title}"), label, k=min(k, 20))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, Path(f).name)
        return buf.getvalue()


b = st.columns(6)
for col, fmt, mime in zip(b, ("pdf", "svg", "png", "csv"), ("application/pdf", "image/svg+xml", "image/png", "text/csv")):
    col.download_button(fmt.upper(), partial(render, fmt), file_name=f"{stem}.{fmt}", mime=mime, key=f"dl_{fmt}")
b[4].download_button("Sidecar JSON", json.dumps(sidecar, indent=2, default=str), file_name=f"{stem}.json",
                     mime="application/json", key="dl_json")
b[5].download_button("All figures (zip)", everything, file_name=f"fame_{who.replace(' ', '')}_figures.zip",
                     mime="application/zip", key="dl_zip")
st.caption("PDF and SVG are vector (PDF fonts embedded as TrueType); PNG is 300 dpi. "
           "The sidecar JSON says what the figure shows; CSV holds its numbers.")
