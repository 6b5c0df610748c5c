"""notebooks/case_study.ipynb runs top to bottom from its own folder (the kernel's working
directory) on the bundled Sports model, user 230, and ends in the exported figure."""

import nbformat


from tests.conftest import REPO, needs_shared

import nbclient  # noqa: E402


def test_case_study_notebook_opens_sports_user_230_from_its_folder(tmp_path, monkeypatch):
    needs_shared("amazon/Sports_and_Outdoors.txt")
    monkeypatch.setenv("FAME_EXPORT_DIR", str(tmp_path))
    nb = nbformat.read(REPO / "notebooks" / "case_study.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    last = nb.cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in last)
    assert (tmp_path / "case_study_user230.pdf").exists() and (tmp_path / "case_study_user230.json").exists()
    streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "IProgress not found" not in streams and "Warning" not in streams      # issue 42.5: the first cell warned
    attention = next(c for c in nb.cells if "expert_attention_figure" in c.source)
    assert any("image/png" in o.get("data", {}) for o in attention.outputs)      # the figure is shown, not only built
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert printed.startswith("Sports_and_Outdoors: user 230")    # the data path resolved from notebooks/
