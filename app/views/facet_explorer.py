"""Facet explorer: do the heads' item sub-embeddings x_v^(h) separate item facets (genre, actor,
brand, category)? Maps of every head side by side, coloured by a chosen facet, nearest neighbours
per head, and the alignment table with its controls. URL parameters: checkpoint, facet, projection, item.

PCA by default (under a second); UMAP maps and the alignment checks are kept on disk per
checkpoint (fame_core.cache), so they are computed once, not at every start of the app.
"""


import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import session
from badges import CHECKS_HELP, facet_badges
from fame_core.facets import facet_labels, nearest_items
from fame_core.labels import NONE_COLOUR, VALUE_COLOURS, facet_rule

ctx = session.context()
model, data, path, data_path = ctx.model, ctx.data, ctx.path, ctx.data_path
H = ctx.n_heads
st.title("Facet explorer")
if data is None:
    st.info("The facet explorer needs the checkpoint's data set (its item facets): give its path in the sidebar.")
    st.stop()
if not data.facets:
    st.info(f"Data set {data.name} carries no item facets (genres, attributes, planted facets), so there is "
            "nothing to align the heads with. MovieLens (genres), Amazon with item2attributes.json and the "
            "synthetic world have them.")
    st.stop()

facet_names = list(data.facets)
session.warn_bad_param("facet", facet_names)
session.warn_bad_param("projection", ["pca", "umap"])
c1, c2, c3 = st.columns([2, 1, 1])
facet = c1.segmented_control("Colour items by", facet_names, default=facet_names[0], key="facet",
                             bind="query-params") or facet_names[0]
method = c2.segmented_control("Map", ["pca", "umap"], default="pca", key="projection", bind="query-params",
                              help="PCA is instant; UMAP (cosine) takes a minute on large catalogues the first "
                                   "time, then it is read from disk") or "pca"
item = session.count_input(c3, "Item", "item", 1, data.n_items, 1)

# ---- maps ------------------------------------------------------------------------------------------
labels, values = facet_labels(data, facet)
representations = [f"head {h}" for h in range(H)] + ["full embedding"]
items = np.arange(1, data.n_items + 1)
text = [data.label(v) for v in items]
palette = VALUE_COLOURS   # distinct categorical colours (D3), the exported maps' too; the legend names them


def pick(key: str):
    points = st.session_state[key].selection.points
    if points:
        session.set_url_value("item", int(points[0]["customdata"]))


cols = st.columns(len(representations))
coords = {}
for col, rep in zip(cols, representations):
    xy = session.projection(path, data_path, rep, method)
    coords[rep] = xy
    fig = go.Figure()
    drawn = np.isfinite(xy[items, 0])
    for v in [-1] + list(range(len(values))):
        sel = (labels[items] == v) & drawn
        fig.add_trace(go.Scattergl(x=xy[items[sel], 0], y=xy[items[sel], 1], mode="markers",
                                   name=values[v] if v >= 0 else "(none)", customdata=items[sel],
                                   text=[text[i - 1] for i in items[sel]], hovertemplate="%{text}<extra></extra>",
                                   marker=dict(size=4, color=palette[v % len(palette)] if v >= 0 else NONE_COLOUR)))
    fig.add_trace(go.Scattergl(x=[xy[item, 0]], y=[xy[item, 1]], mode="markers", name=f"item {item}",
                               customdata=[item], text=[data.label(item)], hovertemplate="%{text}<extra></extra>",
                               marker=dict(size=12, symbol="x", color="black")))
    fig.update_layout(title=rep, height=360, margin=dict(l=5, r=5, t=35, b=5), showlegend=rep == "full embedding",
                      legend=dict(title=dict(text=facet)), xaxis=dict(visible=False), yaxis=dict(visible=False))
    key = f"map_{rep}"
    col.plotly_chart(fig, key=key, on_select=lambda key=key: pick(key), selection_mode="points")
st.caption(f"Colours and 'same {facet}': {facet_rule()}")
st.caption("Click a point (or type an item id above) to see its nearest neighbours in every head."
           + (f" Maps show a fixed sample of {session.MAP_ITEMS:,} of the {data.n_items:,} items."
              if data.n_items > session.MAP_ITEMS else ""))

# ---- nearest neighbours of one item --------------------------------------------------------------------
st.subheader(f"Nearest neighbours of {data.label(item)}")
near = nearest_items(model, item, k=10)
ncols = st.columns(len(near))
for col, (rep, ids) in zip(ncols, near.items()):
    same = [("yes" if labels[v] == labels[item] and labels[item] >= 0 else "") for v in ids]
    share = sum(bool(s) for s in same) / len(ids)
    col.markdown(f"**{rep}** · same {facet}: {share:.0%}")
    col.table(pd.DataFrame({"item": ids, "label": [data.label(v) for v in ids], f"same {facet}": same}).style.hide(axis="index"))



def map_bytes(fmt: str) -> bytes:
    from fame_core import export

    fig, numbers = export.embedding_maps_figure(coords, labels, values, facet, title=f"{ctx.name}: items by {facet}")
    return numbers.to_csv(index=False).encode() if fmt == "csv" else export.figure_bytes(fig, fmt)


session.download_row(f"fame_{ctx.slug}_maps_{facet}_{method}", map_bytes, prefix="Maps ", key="map")

# ---- the verdict and the numbers: measured after the maps are drawn ------------------------------------
st.subheader("Are the heads facets? Alignment of heads and facets, with controls")
auto = data.n_items <= session.AUTO_CHECKS_ITEMS or session.checks_cached(path, data_path, facet)
if auto or st.button("Measure the heads, gate and experts (about a minute on Amazon-sized data; kept on disk)",
                     key="run_checks"):
    table = session.alignment(path, data_path)
    st.markdown("**Specialisation checks** " + " ".join(facet_badges(model, path, data_path, facet)))
    st.caption(CHECKS_HELP)
    st.dataframe(table.round(4), hide_index=True)
    st.caption("knn_agreement: share of each item's 10 nearest neighbours with its value (chance: knn_chance). "
               "probe_accuracy: 5-fold linear probe; probe_shuffled_labels and majority_rate are the floors.")
    session.download_row(f"fame_{ctx.slug}_alignment", lambda fmt: table.to_csv(index=False).encode(),
                         formats=("csv",), prefix="Alignment ", key="alignment")
