"""The notebook runs top to bottom on a sweep (a small synthetic one written here)."""

import nbformat
from nbclient import NotebookClient
from test_analysis import degraded_sweep

from conftest import ROOT


def test_notebook_executes_top_to_bottom(tmp_path, monkeypatch):
    sweep = degraded_sweep(tmp_path / "sweep")
    monkeypatch.setenv("DEGRADATION_SWEEP", str(sweep))
    notebook = nbformat.read(ROOT / "notebooks" / "explore_runs.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert str(sweep) in outputs[0]["data"]["text/plain"]
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "**Degradation: yes.**" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # Fig. 6, Fig. 1, one run
