import glob
import json
import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
#: What each notebook's outputs must show (its last steps ran and printed their results).
EXPECTED = {
    "00-data-and-baselines.ipynb": "Open-set retrieval",
    "01-quickstart.ipynb": "nearest products:",
    "02-few-shot.ipynb": "ensemble   5-way 1-shot",
    "03-weak-labels.ipynb": "text search \"striped dress\"",
    "04-serving.ipynb": "API search:",
}


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel running this interpreter with this checkout importable, whatever PATH says."""
    spec = tmp_path / "jupyter" / "kernels" / "visnet-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "visnet test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return "visnet-test"


def test_there_are_notebooks():
    assert [os.path.basename(p) for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path, kernel):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert EXPECTED[os.path.basename(path)] in text
    if os.path.basename(path) == "02-few-shot.ipynb":  # the heatmap is shown
        assert any("image/png" in o.get("data", {}) for o in outputs)
