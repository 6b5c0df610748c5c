"""Cohort: one checkpoint, every user of a split. Is the gate ever decisive, for whom, which head
wins where, are the experts used? Every figure sliceable by history length, target popularity and
the dominant value of an item facet; a bucket lists its users as links to their case studies.
URL parameters: checkpoint, split, k, slice, bucket, group, gate_rules (true: the gate against the rules).
"""

import streamlit as st

import badges
import population
import session
from fame_core import cohort, lists, verdicts
from fame_core import population_export as px


@st.cache_data(show_spinner="Reading the gate against the simple rules…", max_entries=8)
def gate_against_rules(path: str, data_path: str | None) -> dict:
    """The gate's verdict (fame_core.verdicts.gate_verdict) from the validation and test tables."""
    model, data = session.open_checkpoint(path, data_path)
    tables = {s: session.cohort_table(path, data_path, s)[0] for s in ("valid", "test")}
    return verdicts.gate_verdict(model, data, tables).to_dict()


ctx = session.context()
model, data, path, data_path, name = ctx.model, ctx.data, ctx.path, ctx.data_path, ctx.name
cfg = model.config
st.title("Cohort")
if data is None:
    st.info("The cohort view needs the checkpoint's data set (its users): give its path in the sidebar.")
    st.stop()

session.warn_bad_param("split", ["test", "valid"])
c1, c2, c3 = st.columns([1, 1, 2])
split = c1.segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params") or "test"
k = session.count_input(c2, "k", "k", 1, 100, 20)   # checked: k=inf or 1e309 is a warning, not an exception
table, info = population.cohort(path, data_path, split)
slices = cohort.slice_columns(table)
session.warn_bad_param("slice", slices)
column = c3.selectbox("Slice by", ["(all users)"] + slices, key="slice", bind="query-params",
                      help="history_length: input items; popularity: quantiles of the target's training count; "
                           "dominant_<facet>: the most frequent facet value in the history the model sees")
column = None if column == "(all users)" else column
bucket = None
if column:
    buckets = cohort.bucket_order(table, column)
    session.warn_bad_param("bucket", buckets)
    per = cohort.by_slice(table, column, cohort.merge_metrics, k=k)
    gated = per[per["merge"] == "gated"]

    def pick():
        points = st.session_state["bucket_chart"].selection.points
        if points:
            st.session_state["bucket"] = str(points[0]["x"])

    fig = population.metric_bars(gated["bucket"], {f"gated NDCG@{k}": gated[f"NDCG@{k}"], f"gated HR@{k}": gated[f"HR@{k}"]},
                                 f"Gated merging per {column} bucket (click a bar to select it)")
    st.plotly_chart(fig, key="bucket_chart", on_select=pick, selection_mode="points")
    bucket = st.segmented_control("Bucket", buckets, key="bucket", bind="query-params")
part = cohort.slice_users(table, column, bucket) if bucket else table
where = f"{column} = {bucket}" if bucket else "all users"
st.caption(f"{len(part):,} of {len(table):,} users ({where}) · {data.name}, {split} split · "
           + ("read from the disk cache" if info.get("from_cache") else f"computed in {info['seconds']:.1f} s and cached on disk"))
stem = f"fame_{name.replace('/', '_')}_cohort_{split}" + (f"_{column}_{bucket}".replace(" ", "").replace(":", "") if bucket else "")
meta = f"{name} · {where}"

# ---- heads against the merges ---------------------------------------------------------------------------
st.subheader(f"Each head against gated and concatenated merging (HR@{k}, NDCG@{k})")
metrics = cohort.merge_metrics(part, k)
m1, m2 = st.columns([3, 2])
m1.plotly_chart(population.metric_bars(metrics["merge"], {f"HR@{k}": metrics[f"HR@{k}"], f"NDCG@{k}": metrics[f"NDCG@{k}"]},
                                       meta), key="metrics_chart")
flips = cohort.hit_flips(part, k)
m2.dataframe(metrics.round(4), hide_index=True)
m2.markdown(f"**Gated hit, concat miss:** {flips['gated_hit_concat_miss']:,} · **concat hit, gated miss:** "
            f"{flips['concat_hit_gated_miss']:,} · both hit {flips['both_hit']:,} · both miss {flips['both_miss']:,}")
population.export_buttons("metrics_dl", f"{stem}_metrics", lambda: px.merge_metrics_figure(metrics, k, meta), "Metrics figure")

# ---- gates ----------------------------------------------------------------------------------------------
H, N = cfg.n_heads, cohort.experts_of(table)
if "gate" not in model.capabilities:
    st.info(f"{type(model).__name__} has no gate and no experts (every head weighs 1, one expert per head): "
            "only the metrics apply.")
else:
    st.subheader("Gate over users")
    dist = cohort.gate_distribution(part)
    cols = st.columns(H + 2)
    for h in range(H):
        cols[h].plotly_chart(population.histogram(dist, f"head {h}", 1.0 / H, f"gate g({h})"), key=f"gate_hist_{h}")
    cols[H].plotly_chart(population.histogram(dist, "entropy", None, "normalised entropy"), key="entropy_hist")
    top = cohort.top_gate_share(part)
    cols[H + 1].plotly_chart(population.share_bars([f"head {h}" for h in top["head"]], {"largest gate": top["share"]},
                                                   "Which head has<br>the largest gate", 1.0 / H, "uniform 1/H"),
                             key="top_gate_chart")
    st.caption(f"Axes anchored at 0..1. Dashed: the uniform gate 1/H = {1 / H:.2f}. Entropy 0: one head decides; "
               "1: all heads weigh equally.")
    temperature_note = lists.gate_temperature_note(model)
    if temperature_note:
        st.caption(temperature_note)
    gate_meta = meta + (f" · gate temperature {cfg.gate_temperature:g}" if temperature_note else "")
    population.export_buttons("gates_dl", f"{stem}_gates", lambda: px.gate_distribution_figure(part, gate_meta),
                              "Gate figure")

    st.subheader("Gate against the simple rules (test users)")
    if st.toggle("Read the gate against the rules", value=False, key="gate_rules", bind="query-params",
                 help="Over test users whose heads rank the target differently: how often the largest-gate head is "
                      "the one that ranks it better, next to rules that need no training (docs/verdicts.md). Uses "
                      "the validation and test tables (cached on disk); the whole split, not the slice."):
        gv = gate_against_rules(path, data_path)
        st.markdown(badges.verdict_badge("gate", gv))
        if "reason" not in gv:
            st.dataframe(verdicts.rules_table(gv).style.format({"value": "{:.4f}", "model minus this": "{:+.4f}"}),
                         hide_index=True)
            st.caption(f"{gv['users']:,} test users; margin against the best rule {gv['margin']:+.4f}, 95 % paired "
                       f"bootstrap interval {gv['ci95'][0]:+.4f} to {gv['ci95'][1]:+.4f}, {gv['test']} p = {gv['p']:.3g}.")

    st.subheader("Expert load")
    load = cohort.expert_load(part)
    cols = st.columns(H)
    for h in range(H):
        d = load[load["head"] == h]
        cols[h].plotly_chart(population.share_bars([f"expert {n}" for n in d["expert"]],
                                                   {"share of positions": d["share_of_positions"],
                                                    "share of users (last position)": d["share_of_users"]},
                                                   f"Head {h}: mean top router weight {d['mean_top_router_weight'].iloc[0]:.3f}",
                                                   1.0 / N, "uniform 1/N", y_title="share routed (argmax)"),
                             key=f"load_chart_{h}")
    st.caption(f"Argmax router choice at every history position and at the last one. Dashed: uniform 1/N = {1 / N:.2f}; "
               f"a mean top router weight near {1 / N:.2f} means the router barely chooses.")
    population.export_buttons("load_dl", f"{stem}_experts", lambda: px.expert_load_figure(part, meta), "Expert figure")

# ---- the users behind a number ----------------------------------------------------------------------------
st.subheader("Users")
groups = ["all", "gated_hit_concat_miss", "concat_hit_gated_miss", "both_hit", "both_miss"] + \
    ([f"largest gate: head {h}" for h in range(H)] if "gate" in model.capabilities else [])
session.warn_bad_param("group", groups)
group = st.selectbox("Which users", groups, key="group", bind="query-params")
if group == "all":
    users = part
elif group.startswith("largest gate"):
    users = part[part["top_gate_head"] == int(group.split()[-1])]
else:
    users = cohort.flip_users(part, group, k)
shown = users[["user", "length", "target", "rank_gated", "rank_concat"] + [c for c in users.columns if c.startswith("gate_")]].copy()
shown[["rank_gated", "rank_concat"]] += 1
st.caption(f"{len(users):,} users ({where}, {group}); ranks 1 = top. Each link opens that user's case study."
           + (" The first 500 are listed; the CSV holds all." if len(users) > 500 else ""))
st.dataframe(population.with_links(shown.head(500), name), hide_index=True, column_config=population.link_config(),
             key="users_table")
st.download_button("Users CSV", users.to_csv(index=False), file_name=f"{stem}_{group.replace(' ', '').replace(':', '')}_users.csv",
                   mime="text/csv", key="users_csv")
