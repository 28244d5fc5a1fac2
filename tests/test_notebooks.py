"""The notebooks in analyses/: they run top to bottom (so they can never rot), and what is saved renders anywhere."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"
NOTEBOOKS = sorted(ANALYSES.glob("*.ipynb"))
EXPECTED = {"modadd113_walkthrough.ipynb", "phase_changes.ipynb", "s5_walkthrough.ipynb", "train_tiny23.ipynb"}
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/|/Users/)")


def test_the_expected_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_notebook_renders_without_a_kernel(path):
    """Saved executed, with cell ids, PNG figures (GitHub does not draw plotly) and no machine paths."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5) and all(c.get("id") for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "execute it: python analyses/regenerate.py"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    text += "".join(c.source for c in nb.cells)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert any(o.output_type in ("stream", "execute_result", "display_data") for c in nb.cells for o in c.get("outputs", []))


def test_show_falls_back_to_the_interactive_figure_with_one_note(monkeypatch, capsys):
    import plotly.graph_objects as go

    import grokinterp as gi
    import grokinterp.api as api

    shown = []
    monkeypatch.setattr(api, "_show_note", False)
    monkeypatch.setattr(go.Figure, "to_image", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("no Chrome")))
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    figs = [go.Figure(go.Scatter(y=[1, 2])), go.Figure(go.Scatter(y=[2, 1]))]
    for fig in figs:
        gi.show(fig)
    assert shown == figs
    assert capsys.readouterr().out.count("note: no static PNG (RuntimeError: no Chrome); showing interactive figures.") == 1
