"""Notebooks run top to bottom on CPU: execute their code cells in order, with short budgets."""

import glob
import json
import os

import matplotlib
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "colab", "*.ipynb"))))
def test_notebook_runs_top_to_bottom(path, monkeypatch):
  matplotlib.use("Agg")
  monkeypatch.setenv("JAXLAB_COLAB_STEPS", "20")
  with open(path) as f:
    notebook = json.load(f)
  namespace: dict = {}
  for cell in notebook["cells"]:
    if cell["cell_type"] == "code":
      exec(compile("".join(cell["source"]), f"{os.path.basename(path)}", "exec"), namespace)
  assert namespace["summary"]["step"] == 20
  assert all(isinstance(t, str) for t in namespace["texts"])
