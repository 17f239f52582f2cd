"""The SMI study's figure and markdown report, both drawn from its summary.json content."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from jaxlab import fileio
from jaxlab.fileio import write_text_atomic


def _interval(row: Mapping[str, float]) -> str:
  return f"{row['r2']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def _error_bars(rows: list[Mapping[str, float]]) -> list[list[float]]:
  """Distances from each point estimate to its interval's ends; a percentile interval need not
  contain the estimate, so a side it falls outside of gets 0."""
  return [[max(r["r2"] - r["low"], 0) for r in rows], [max(r["high"] - r["r2"], 0) for r in rows]]


def write_figure(summary: Mapping[str, Any], workdir: str) -> str:
  """R^2 per predictor against model size with bootstrap intervals, the pooled fit's R^2, and
  mean accuracy per size (mean +- std over seeds)."""
  # The object-oriented API: no pyplot backend is switched, so a notebook's inline plots survive.
  from matplotlib.figure import Figure

  sizes = summary["sizes"]
  params = [row["params"] for row in sizes.values()]
  predictors = summary["predictors"]
  fig = Figure(figsize=(14, 3.8))
  axes = fig.subplots(1, 3, width_ratios=(2, 1.2, 1.2))
  for k, predictor in enumerate(predictors):
    rows = [row["r2"][predictor] for row in sizes.values()]
    shift = 1.04 ** (k - (len(predictors) - 1) / 2)  # side by side on the log axis
    axes[0].errorbar(
      [p * shift for p in params],
      [r["r2"] for r in rows],
      yerr=_error_bars(rows),
      fmt="o-" if predictor != "TRUE-COUNT" else "s--",
      capsize=3,
      label=predictor,
    )
  axes[0].set(
    xscale="log",
    xlabel="parameters",
    ylabel="R$^2$ (group means)",
    ylim=(-0.02, 1.02),
    title="Predictors of CBQA accuracy per size (95% bootstrap CI)",
  )
  axes[0].legend(fontsize=8)
  pooled = [summary["pooled"][p] for p in predictors]
  axes[1].bar(
    range(len(predictors)),
    [r["r2"] for r in pooled],
    yerr=_error_bars(pooled),
    capsize=4,
    color=[f"C{k}" for k in range(len(predictors))],
  )
  axes[1].set_xticks(range(len(predictors)), predictors, fontsize=8)
  axes[1].set(ylabel="R$^2$", ylim=(0, 1), title="Pooled over sizes")
  axes[2].errorbar(
    params,
    [row["mean_acc"] for row in sizes.values()],
    yerr=[row["mean_acc_std"] for row in sizes.values()],
    fmt="o-",
    capsize=3,
  )
  axes[2].set(
    xscale="log",
    xlabel="parameters",
    ylabel="mean CBQA accuracy",
    ylim=(0, 1),
    title="Accuracy (mean +- std over seeds)",
  )
  fig.tight_layout()
  path = os.path.join(workdir, "smi_scaling.png")
  fileio.save_figure(fig, path, dpi=120)
  return path


def _factor_table(correlations: Mapping[str, Mapping[str, float]]) -> list[str]:
  names = list(correlations)
  lines = ["| log2(1 + factor) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  for a in names:
    lines.append(f"| {a} | " + " | ".join(f"{correlations[a][b]:+.3f}" for b in names) + " |")
  return lines


def write_markdown(summary: Mapping[str, Any], path: str) -> None:
  """The report: R^2 per predictor and size with intervals, the pooled fit, accuracy per size,
  the factor correlations and which predictor came out best."""
  predictors = summary["predictors"]
  header = "| size | params | seeds | mean CBQA acc | facts (dropped) | " + " | ".join(
    f"R^2 {p}" for p in predictors
  )
  lines = [
    "# SMI scaling study (synthetic knowledge corpus)",
    "",
    f"{summary['n_facts']} facts; R^2 of the group-mean fit (docs/smi.md section 4) with 95% "
    "bootstrap intervals over facts; accuracy per fact averaged over the seeds.",
    "",
    header + " |",
    "|---" * (5 + len(predictors)) + "|",
  ]
  for size, row in summary["sizes"].items():
    lines.append(
      f"| {size} | {row['params']:,} | {len(row['seeds'])} | "
      f"{row['mean_acc']:.3f} +- {row['mean_acc_std']:.3f} | {row['n_facts']} "
      f"({row['n_dropped']}) | " + " | ".join(_interval(row["r2"][p]) for p in predictors) + " |"
    )
  lines.append(
    "| pooled (SMI with each size's P) | | | | | "
    + " | ".join(_interval(summary["pooled"][p]) for p in predictors)
    + " |"
  )
  methods = [p for p in predictors if p != "TRUE-COUNT"]
  best = {
    size: max(methods, key=lambda m: row["r2"][m]["r2"]) for size, row in summary["sizes"].items()
  }
  pooled_best = max(methods, key=lambda m: summary["pooled"][m]["r2"])
  rows = {**summary["sizes"], "pooled": {"r2": summary["pooled"]}}
  lines += [
    "",
    "Best corpus statistic per size (TRUE-COUNT, the documents that truly state the fact, is the "
    "reference, not a contender): "
    + ", ".join(f"{size}: {method}" for size, method in best.items())
    + f"; pooled: {pooled_best}.",
    "",
    "Share of bootstrap resamples in which each statistic has the highest R^2 (paired: the same "
    "resampled facts for every statistic):",
    "",
    "| | " + " | ".join(methods) + " |",
    "|---" * (1 + len(methods)) + "|",
    *(
      f"| {name} | " + " | ".join(f"{row['r2'][m]['best']:.2f}" for m in methods) + " |"
      for name, row in rows.items()
    ),
    "",
    "Mean accuracy by documents stating the fact (true_docs):",
    "",
    *(
      f"- {size}: " + ", ".join(f"{k}: {v:.2f}" for k, v in row["acc_by_true_docs"].items())
      for size, row in summary["sizes"].items()
    ),
    "",
    "## Factor correlations",
    "",
    *_factor_table(summary["factor_correlations"]),
    "",
    f"Wall time: {summary['wall_time_s']:.0f} s. Figure: smi_scaling.png.",
    "",
  ]
  write_text_atomic(path, "\n".join(lines))
