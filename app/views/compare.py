"""Compare: two checkpoints on the same data set, user by user. Who wins where, is the difference
more than noise (a paired test over users), and for one user both case studies side by side with
integrated gradients beside attention. URL parameters: a, b, user, split, k.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import population
import session
from fame_core.checkpoint import read_config
from fame_core.compare import check_same_dataset, most_disagreeing

ctx = session.context()
checkpoints = session.available_checkpoints()
names = list(checkpoints)
st.title("Compare")


@st.cache_data(ttl=30, show_spinner=False)
def fingerprints(paths: tuple) -> dict:
    out = {}
    for p in paths:
        try:
            out[p] = read_config(p)[1].get("fingerprint")
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is simply not offered as a partner
            out[p] = None
    return out


prints = fingerprints(tuple(checkpoints.values()))
for key in ("a", "b"):
    session.warn_bad_param(key, names)
session.warn_bad_param("split", ["test", "valid"])
c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
a = c1.selectbox("Checkpoint a", names, index=names.index(ctx.name), key="a", bind="query-params")
same = [n for n in names if n != a and prints[checkpoints[n]] == prints[checkpoints[a]] and prints[checkpoints[a]]]
b = c2.selectbox("Checkpoint b", names, index=names.index(same[0]) if same else names.index(a), key="b",
                 bind="query-params", help="a checkpoint of the same data set")
split = c3.segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params") or "test"
k = session.count_input(c4, "k", "k", 1, 100, 20)   # checked: k=inf or 1e309 is a warning, not an exception
data_path = st.session_state.get(f"data_path:{a}") or None
try:
    model_a, data = session.open_checkpoint(checkpoints[a], data_path)
    model_b, _ = session.open_checkpoint(checkpoints[b], data_path)
    check_same_dataset(model_a, model_b, (a, b))
except session.fame_core.FameError as err:
    st.error(str(err))
    st.stop()
with st.sidebar:     # what this page shows: the sidebar's own checkpoint is not used here
    st.markdown("**Compared on this page**")
    for side, name, model in (("a", a, model_a), ("b", b, model_b)):
        st.caption(f"{side}: **{name}** · " + session.model_summary(model))
if data is None:
    st.info(f"Comparing needs the data set of {a}: give its path in the sidebar (select {a} there).")
    st.stop()
if a == b:
    st.caption("a and b are the same checkpoint: every user is a tie.")

table, summary = population.compare(checkpoints[a], checkpoints[b], data_path, split, k, (a, b))
s1, s2, s3, s4 = st.columns(4)
s1.metric(f"{a} better on NDCG@{k}", f"{summary[f'a_better_ndcg@{k}']:,}",
          help=f"any depth (a lower target rank): {summary['a_better']:,}")
s2.metric(f"{b} better on NDCG@{k}", f"{summary[f'b_better_ndcg@{k}']:,}",
          help=f"any depth (a lower target rank): {summary['b_better']:,}")
s3.metric(f"same NDCG@{k}", f"{summary[f'same_ndcg@{k}']:,}", help=f"same rank: {summary['ties']:,}")
s4.metric(f"NDCG@{k}: a − b", f"{summary['mean_difference']:+.4f}")
st.caption(f"Counts: {summary['counts_definition']}. At any depth: {a} better {summary['a_better']:,}, "
           f"{b} better {summary['b_better']:,}, same rank {summary['ties']:,}.")
st.markdown(f"**{summary['test']}:** statistic {summary['statistic']:.1f}, p = {summary['p_value']:.3g} over "
            f"{summary['users']:,} users ({summary['users_with_a_difference']:,} with a difference). "
            f"NDCG@{k}: {a} {summary[f'NDCG@{k}_a']:.4f}, {b} {summary[f'NDCG@{k}_b']:.4f}.")


def pick():
    points = st.session_state["rank_scatter"].selection.points
    if points:
        st.session_state["user"] = str(points[0]["customdata"])


def decade_ticks(hi: float) -> dict:
    """Log-axis ticks at whole decades only (1, 10, ..., 10000): plotly's own added 2 and 5 between them."""
    values = [10 ** e for e in range(0, 6) if 10 ** e <= max(hi, 1)]
    return dict(tickvals=values, ticktext=[f"{v:,}" for v in values])


shown = table.sample(min(len(table), 20000), random_state=0) if len(table) > 20000 else table
colour = {"a": "#4c72b0", "b": "#dd8452", "tie": "#999999"}
fig = go.Figure([go.Scattergl(x=g["rank_a"], y=g["rank_b"], mode="markers", name={"a": f"{a} better", "b": f"{b} better",
                                                                                   "tie": "tie"}[who],
                              customdata=g["user"], marker=dict(size=4, color=colour[who], opacity=0.5),
                              hovertemplate="user %{customdata}: %{x} vs %{y}<extra></extra>")
                 for who, g in shown.groupby("better")])
hi = float(max(table["rank_a"].max(), table["rank_b"].max()))
fig.add_trace(go.Scatter(x=[1, hi], y=[1, hi], mode="lines", line=dict(dash="dash", color="#555"), name="equal rank"))
fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10), title="Target rank per user (log scale; click a user)",
                  xaxis=dict(type="log", title=f"rank under {a} (1 = top)", **decade_ticks(hi)),
                  yaxis=dict(type="log", title=f"rank under {b}", **decade_ticks(hi)))
st.plotly_chart(fig, key="rank_scatter", on_select=pick, selection_mode="points")
if len(shown) < len(table):
    st.caption(f"Scatter shows a fixed random sample of {len(shown):,} of {len(table):,} users; counts and test use all.")
from fame_core import population_export as px  # noqa: E402

population.export_buttons("scatter_dl", f"fame_{a.replace('/', '_')}_vs_{b.replace('/', '_')}_ranks",
                          lambda: px.rank_scatter_figure(table, (a, b)), "Scatter")

st.subheader("Users where the two disagree most")
top = most_disagreeing(table, 20)
st.dataframe(population.with_links(top, a, f"case study ({a})").assign(
    **{f"case study ({b})": [population.case_link(b, u) for u in top["user"]]}).round(4), hide_index=True,
    column_config={**population.link_config(f"case study ({a})"), **population.link_config(f"case study ({b})")},
    key="disagree_table")
st.caption("disagreement = |log2(rank_a) − log2(rank_b)|: how many doublings of rank separate the two models.")

# ---- one user, both models -------------------------------------------------------------------------------
st.subheader("One user under both models")
user = st.text_input("User id", key="user", bind="query-params", placeholder=f"e.g. {top['user'].iloc[0]}")
if user and not data.has_user(user):
    st.warning(f"User `{user}` is not in data set {data.name}; showing user {top['user'].iloc[0]}.")
    user = ""
if user and user not in set(table["user"]):
    st.warning(f"User `{user}` has fewer than 3 items and cannot be split; showing user {top['user'].iloc[0]}.")
    user = ""
user = user or str(top["user"].iloc[0])
seq, target = data.example(data.user_row(user), split)
st.caption(f"User {user}: {len(seq)} history items, target {data.label(int(target))}.")
cols = st.columns(2)
for col, name, model, side in ((cols[0], a, model_a, "a"), (cols[1], b, model_b, "b")):
    with col:
        insp = session.inspect(checkpoints[name], data_path, tuple(int(v) for v in seq), int(target), 10)
        st.markdown(f"**{name}** ({model.config.model.upper()}) · target rank {insp.target_rank['gated']} · "
                    f"[open the case study]({population.case_link(name, user)})")
        if "gate" in model.capabilities:
            st.caption("gates: " + " · ".join(f"head {h} {g:.3f}" for h, g in enumerate(insp.gates)))
        items = insp.top["gated"][:10]
        st.table(pd.DataFrame({"#": np.arange(1, len(items) + 1), "item": items,
                               "label": [("🎯 " if v == target else "") + data.label(int(v)) for v in items]}).style.hide(axis="index"))
        population.attribution_section(name, checkpoints[name], data_path, model, data, user, split,
                                       key=f"attr_{side}")
