"""How long the Facet explorer takes to draw on an Amazon-sized checkpoint.

    python bench/facet_page_speed.py [--data ../shared/data/amazon/Sports_and_Outdoors.txt]

An untrained FAME (H=2, N=4) with the data set's items is written to a temporary directory (speed
does not depend on the weights); the page is run headlessly (AppTest) with PCA and with UMAP maps:
first draw (alignment probes + maps, computed once then cached), recolouring and an item switch.
Writes bench/results/facet-page-speed-<data>.json.
"""

import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    import argparse

    import torch
    from streamlit.testing.v1 import AppTest

    from fame_core.checkpoint import dataset_record, write_checkpoint
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig, build_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared/data/amazon/Sports_and_Outdoors.txt"))
    a = p.parse_args()
    data = load_dataset(a.data)
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    write_checkpoint(tmp / "timing", build_model(FAMEConfig(n_items=data.n_items)), dataset_record(data), {}, [])
    os.environ["FAME_CHECKPOINTS"] = str(tmp)
    results = []
    for method in ("pca", "umap"):
        at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=1800)
        at.query_params["checkpoint"] = f"{tmp.name}/timing"
        at.query_params["projection"] = method
        at.run()
        t = time.perf_counter()
        at.switch_page("views/facet_explorer.py").run()
        first = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        t = time.perf_counter()
        at.segmented_control(key="facet").set_value(list(data.facets)[0]).run()
        recolour = time.perf_counter() - t
        t = time.perf_counter()
        at.number_input(key="item").set_value(min(230, data.n_items)).run()
        item = time.perf_counter() - t
        results.append({"projection": method, "first_draw_s": round(first, 2), "recolour_s": round(recolour, 2),
                        "item_switch_s": round(item, 2)})
        print(json.dumps(results[-1]))
    report = {"data": data.name, "items": data.n_items, "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_average": os.getloadavg(), "results": results,
              "note": "first draw includes the alignment probes (cached per checkpoint) and, per map, "
                      "UMAP or PCA of up to 5,000 items"}
    out = REPO / "bench" / "results" / f"facet-page-speed-{data.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
