"""notebooks/case_study.ipynb runs top to bottom and ends in the exported figure."""

import nbformat


from tests.conftest import REPO

import nbclient  # noqa: E402


def test_case_study_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("FAME_EXPORT_DIR", str(tmp_path))
    nb = nbformat.read(REPO / "notebooks" / "case_study.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    last = nb.cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in last)
    assert (tmp_path / "case_study_user42.pdf").exists() and (tmp_path / "case_study_user42.json").exists()
