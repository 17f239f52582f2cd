"""Scoring preference models: both internal reward models' predictions on encoded pairs, their
accuracy and agreement against known labels, and the study's per-iteration report."""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxlab import fileio
from jaxlab.data.source import padded_batches
from jaxlab.eval.stats import mean_std
from jaxlab.fileio import write_text_atomic
from jaxlab.objectives.scir import SCIRSettings, reward_predictions
from jaxlab.parallel.mesh import mesh_context


def predict_pairs(
  model: nn.Module,
  params: Any,
  frozen: dict[str, Any],
  arrays: dict[str, np.ndarray],
  settings: SCIRSettings,
  verdict_ids: tuple[int, int],
  *,
  batch_size: int,
  mesh: jax.sharding.Mesh,
  rules: tuple,
) -> tuple[np.ndarray, np.ndarray]:
  """(P_I, P_G) of y1 being better for every encoded pair, in fixed-size padded batches."""
  implicit, judge = [], []
  num = len(arrays["pair_weight"])
  with mesh_context(mesh, rules):
    for batch in padded_batches(arrays, batch_size):
      p_i, p_g = jax.device_get(_predict(model, params, frozen, batch, settings, verdict_ids))
      implicit.append(p_i)
      judge.append(p_g)
  return np.concatenate(implicit)[:num], np.concatenate(judge)[:num]


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _predict(model, params, frozen, batch, settings, verdict_ids):
  """Compiled once per model, settings and batch shape, however many rounds call it."""
  pred = reward_predictions(model, params, frozen, batch, settings, verdict_ids)
  return pred.p_implicit, pred.p_judge


def reward_model_summary(
  p_implicit: np.ndarray, p_judge: np.ndarray, first_better: np.ndarray | None = None
) -> dict[str, float]:
  """Agreement of the two reward models (same winner) and, with true labels, each one's
  accuracy (a prediction of exactly 0.5 counts as wrong); None for no pairs."""
  if len(p_implicit) == 0:
    keys = ("agreement",) if first_better is None else ("agreement", "irm_accuracy", "grm_accuracy")
    return dict.fromkeys(keys)
  out = {"agreement": float(np.mean((p_implicit - 0.5) * (p_judge - 0.5) > 0))}
  if first_better is not None:
    truth = np.where(first_better, 1.0, -1.0)
    out["irm_accuracy"] = float(np.mean((p_implicit - 0.5) * truth > 0))
    out["grm_accuracy"] = float(np.mean((p_judge - 0.5) * truth > 0))
  return out


def win_rate(scores: np.ndarray, baseline: np.ndarray) -> float:
  """Share of paired samples where `scores` beats `baseline` (ties count half)."""
  return float(np.mean((scores > baseline) + 0.5 * (scores == baseline)))


REPORT_COLUMNS = (
  ("score", "policy score"),
  ("win_rate", "win rate vs start"),
  ("agreement", "IRM/GRM agreement"),
  ("irm_accuracy", "IRM accuracy"),
  ("grm_accuracy", "GRM accuracy"),
  ("selected", "pairs selected by the round from this model"),
)


def aggregate(results: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
  """{method: {seed: [per-iteration metrics]}} -> {method: [per-iteration {metric: (mean,
  std)}]} over seeds."""
  table: dict[str, Any] = {}
  for method, by_seed in results.items():
    rows = list(by_seed.values())
    iterations = min(len(r) for r in rows)
    table[method] = [
      {key: mean_std([r[t].get(key, float("nan")) for r in rows]) for key, _ in REPORT_COLUMNS}
      for t in range(iterations)
    ]
  return table


def write_report(table: dict[str, Any], header: str, workdir: str) -> None:
  """report.md (a mean +- std table per method and iteration) and curves.png."""
  lines = [header, "", "| method | model | " + " | ".join(t for _, t in REPORT_COLUMNS) + " |"]
  lines.append("|---|---|" + "---|" * len(REPORT_COLUMNS))
  for method, rows in table.items():
    for t, row in enumerate(rows):
      cells = [
        "-" if math.isnan(m) else f"{m:.3f} +- {s:.3f}"
        for m, s in (row[k] for k, _ in REPORT_COLUMNS)
      ]
      lines.append(f"| {method} | M{t} | " + " | ".join(cells) + " |")
  write_text_atomic(os.path.join(workdir, "report.md"), "\n".join(lines) + "\n")
  _write_figure(table, os.path.join(workdir, "curves.png"))


def _write_figure(table: dict[str, Any], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  keys = [k for k, _ in REPORT_COLUMNS[:5]]
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
  for ax, (key, title) in zip(axes, REPORT_COLUMNS):
    for method, rows in table.items():
      means = np.array([row[key][0] for row in rows])
      stds = np.array([row[key][1] for row in rows])
      xs = np.arange(len(rows))
      ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set_title(title)
    ax.set_xlabel("model M_t")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fileio.save_figure(fig, path, dpi=110)
  plt.close(fig)
