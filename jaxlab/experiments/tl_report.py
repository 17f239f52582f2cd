"""The `tl_training` study's summary: TS / PI / CF as mean ± std over seeds for every method and
test set (`aggregate`), and report.md with report.png (`write_report`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlab import fileio
from jaxlab.eval.stats import mean_std
from jaxlab.eval.tool_use import LEVELS as SCORE_LEVELS
from jaxlab.fileio import write_text_atomic
from jaxlab.objectives.tl import Category


def aggregate(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
  """method -> test set -> level -> {"mean", "std"} over seeds."""
  table: dict[str, Any] = {}
  for method, per_seed in results.items():
    sets = next(iter(per_seed.values()))["scores"]
    table[method] = {
      name: {
        level: dict(
          zip(("mean", "std"), mean_std([r["scores"][name][level] for r in per_seed.values()]))
        )
        for level in SCORE_LEVELS
      }
      for name in sets
    }
  return table


def write_report(summary: dict[str, Any], workdir: str, header: Sequence[str]) -> None:
  """report.md (the table, rule rows, PPO and category summaries) and report.png."""
  table, rules = summary["table"], summary.get("rules", {})
  sets = list(next(iter(table.values())))
  columns = [f"{name} {level}" for name in sets for level in SCORE_LEVELS]
  lines = [
    *header,
    "",
    "| method | " + " | ".join(columns) + " |",
    "|---" * (len(columns) + 1) + "|",
  ]
  for method, row in table.items():
    cells = [
      f"{row[n][lv]['mean']:.1f} ± {row[n][lv]['std']:.1f}" for n in sets for lv in SCORE_LEVELS
    ]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  for rule in ("solve", "name_rule", "canonical_rule"):
    if rules and all(rule in rules.get(n, {}) for n in sets):
      cells = [f"{rules[n][rule][lv]:.1f}" for n in sets for lv in SCORE_LEVELS]
      lines.append(f"| rule: {rule} | " + " | ".join(cells) + " |")
  tl = summary["results"].get("tl", {})
  if tl:
    lines += [
      "",
      "PPO (per seed; rollout metrics averaged over the first -> the last quarter of the logged "
      "rows; clip fraction averaged over every logged step):",
      "",
    ]
    for seed, row in tl.items():
      p = row.get("ppo", {})
      first, last = p.get("first", {}), p.get("last", {})
      get = lambda d, k: float("nan") if d.get(k) is None else d[k]
      lines.append(
        f"- seed {seed}: reward {get(first, 'rollout_reward'):.3f} -> "
        f"{get(last, 'rollout_reward'):.3f}, correct {get(first, 'rollout_share_correct'):.2f} -> "
        f"{get(last, 'rollout_share_correct'):.2f}, KL {get(last, 'rollout_kl'):.4f}, "
        f"explained variance {get(last, 'rollout_explained_variance'):.3f}, "
        f"clip fraction {get(p, 'clip_fraction_mean'):.4f}, last value loss "
        f"{get(p, 'value_loss'):.4f}"
      )
  first_set = sets[0]
  shares = {
    method: {
      c: float(np.mean([r["categories"][first_set][c] for r in per_seed.values()]))
      for c in next(iter(per_seed.values()))["categories"].get(first_set, {})
    }
    for method, per_seed in summary["results"].items()
    if all(first_set in r.get("categories", {}) for r in per_seed.values())
  }
  if shares:
    used = [c.value for c in Category if any(row.get(c.value, 0) for row in shares.values())]
    lines += [
      "",
      f"Reward categories of the predictions on {first_set} (mean share over seeds):",
      "",
    ]
    lines += ["| method | " + " | ".join(used) + " |", "|---" * (len(used) + 1) + "|"]
    for method, row in shares.items():
      lines.append(f"| {method} | " + " | ".join(f"{row[c]:.3f}" for c in used) + " |")
  write_text_atomic(os.path.join(workdir, "report.md"), "\n".join(lines) + "\n")
  _write_figure(table, sets, os.path.join(workdir, "report.png"))


def _write_figure(table: dict[str, Any], sets: Sequence[str], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  methods = list(table)
  fig, axes = plt.subplots(1, len(SCORE_LEVELS), figsize=(4 * len(SCORE_LEVELS), 3.2), sharey=True)
  width = 0.8 / len(methods)
  for ax, level in zip(axes, SCORE_LEVELS):
    for i, method in enumerate(methods):
      means = [table[method][n][level]["mean"] for n in sets]
      stds = [table[method][n][level]["std"] for n in sets]
      ax.bar(np.arange(len(sets)) + i * width, means, width, yerr=stds, label=method, capsize=2)
    ax.set_xticks(np.arange(len(sets)) + width * (len(methods) - 1) / 2, sets)
    ax.set_title(level)
    ax.set_ylim(0, 100)
  axes[0].set_ylabel("% of test items")
  axes[-1].legend(fontsize=7)
  fig.tight_layout()
  fileio.save_figure(fig, path, dpi=120)
  plt.close(fig)
