"""Interventions over a population: one intervention (a head or an expert knocked out, the router
or the gate set) on every user of a split, and what it does to HR@k and NDCG@k, with the paired
tests. URL parameters: checkpoint, ablate, mode, split, k (e.g. /interventions?checkpoint=demo&
ablate=expert:1.3&split=test&k=20). Presentation only: fame_core.what_if.population runs
fame_core.interventions.intervene_population, cached on disk per checkpoint, split, intervention,
mode and k.
"""

import hashlib

import plotly.graph_objects as go
import streamlit as st

import population
import session
from fame_core import what_if as wi

ctx = session.context()
model, data, path, data_path, name = ctx.model, ctx.data, ctx.path, ctx.data_path, ctx.name
st.title("Interventions")
if data is None:
    st.info("The interventions page needs the checkpoint's data set (its users): give its path in the sidebar. "
            "One history's what-if is in the case study's *What if* panel.")
    st.stop()


@st.cache_data(show_spinner="Every user of the split before and after the intervention (one batched pass; "
                            "cached on disk)…", max_entries=16)
def run(path: str, data_path: str | None, split: str, spec: str, mode: str, k: int):
    model, data = session.open_checkpoint(path, data_path)
    key = hashlib.sha256(str(data_path).encode()).hexdigest()[:8] if data_path else ""
    return wi.population(model, data, path, split, [spec], k=k, mode=mode, data_key=key)


choices = wi.flat_choices(model)
for key, allowed in (("ablate", choices), ("split", ["test", "valid"]), ("mode", ["zero", "mean"])):
    session.warn_bad_param(key, allowed)
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
spec = c1.selectbox("Intervention", choices, key="ablate", bind="query-params",
                    help="Only what this model has is offered (its capabilities: " + ", ".join(sorted(model.capabilities))
                         + "). head:H ablates head H · expert:H.N knocks out expert N of head H · router:H=uniform|argmax "
                           "· gate=uniform (concat's weights) | rule (the history's majority head) | onehot:h")
split = c2.segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params") or "test"
mode = "zero"
if wi.takes_mode(spec):
    mode = c3.segmented_control("Mode", ["zero", "mean"], default="zero", key="mode", bind="query-params",
                                help="zero: knocked out; mean: replaced by its mean over the split's users") or "zero"
k = session.count_input(c4, "k", "k", 1, 100, 20)

summary, table = run(path, data_path, split, spec, mode, k)
what = ", ".join(summary["interventions"])
st.caption(f"{summary['users']:,} users of {data.name}, {split} split · {what} · "
           + ("read from the disk cache" if summary.get("from_cache") else "computed now and cached on disk"))

# ---- before and after ---------------------------------------------------------------------------------------
b, a = summary["before"], summary["after"]
lo, hi = summary["ci95_mean_change"]
m1, m2, m3, m4 = st.columns(4)
m1.metric(f"HR@{k} after", f"{a[f'HR@{k}']:.4f}", f"{summary[f'mean_change_HR@{k}']:+.4f} (before {b[f'HR@{k}']:.4f})",
          delta_color="normal")
m2.metric(f"NDCG@{k} after", f"{a[f'NDCG@{k}']:.4f}",
          f"{summary[f'mean_change_NDCG@{k}']:+.4f} (before {b[f'NDCG@{k}']:.4f})", delta_color="normal")
m3.metric(f"95 % interval of the NDCG@{k} change", f"{lo:+.4f} .. {hi:+.4f}")
m4.metric("Wilcoxon p", f"{summary['p_value']:.3g}")
st.markdown(f"Users better **{summary['users_better']:,}**, worse **{summary['users_worse']:,}**, unchanged "
            f"**{summary['users_unchanged']:,}** (target rank under the gated ranking).")
st.caption(f"Interval: {summary['ci']}. Test: {summary['test']}. Mean gate "
           + " / ".join(f"{g:.3f}" for g in summary["mean_gate_before"]) + " before, "
           + " / ".join(f"{g:.3f}" for g in summary["mean_gate_after"]) + " after.")

# ---- per-user changes ------------------------------------------------------------------------------------------
st.subheader(f"Per-user change of NDCG@{k}")
hist = wi.change_histogram(table, k)
m = hist.attrs["range"][1]
fig = go.Figure(go.Bar(x=(hist["bin_lo"] + hist["bin_hi"]) / 2, y=hist["share"], width=hist["bin_hi"] - hist["bin_lo"],
                       customdata=hist["users"], marker_color="#4c72b0",
                       hovertemplate="%{x:+.4f}: %{y:.3f} (%{customdata} users)<extra></extra>"))
fig.add_vline(x=0, line_dash="dash", line_color="#555", annotation_text="no change")
fig.update_xaxes(range=[-m, m], title=f"NDCG@{k} after − before (symmetric range ±{m:.3g}, the largest change)")
fig.update_yaxes(range=[0, 1], title="share of users")
fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10))
st.plotly_chart(fig, key="change_hist")
st.caption(f"{hist.attrs['unchanged']:,} of {hist.attrs['users']:,} users do not change (the middle bin holds them).")

st.subheader("Users most changed")
most = wi.most_changed(table, k, 20)
st.caption("By |NDCG change|, then |rank change|; ranks 1 = top. Each link opens that user's case study.")
st.dataframe(population.with_links(most, name).round(4), hide_index=True, column_config=population.link_config(),
             key="most_changed")
st.download_button("Per-user CSV", table.to_csv(index=False), mime="text/csv", key="users_csv",
                   file_name=f"fame_{ctx.slug}_interventions_{split}_{spec.replace(':', '').replace('=', '-')}_k{k}.csv")
