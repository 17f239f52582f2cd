"""The SMI study's combined figure and markdown report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jaxlab import fileio
from jaxlab.fileio import write_text_atomic

METHODS = ("CO-OCCUR", "MI", "SMI")


def write_figure(results: Sequence[dict[str, Any]], workdir: str, variant: str) -> str:
  """R^2 per method against model size, and each size's SMI group means with its fitted line."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxlab.smi.fit import load_records, plot_fit
  from jaxlab.smi.metric import predictors

  fig, axes = plt.subplots(1, 1 + len(results), figsize=(4.2 * (1 + len(results)), 3.8))
  params = [r["params"] for r in results]
  for method in METHODS:
    axes[0].plot(params, [r["fit"]["methods"][method]["r2"] for r in results], "o-", label=method)
  axes[0].set(
    xscale="log",
    xlabel="parameters",
    ylabel="R$^2$ (group means)",
    title="Predictors of CBQA accuracy",
  )
  axes[0].legend()
  for ax, result in zip(axes[1:], results):
    records = load_records(os.path.join(workdir, "models", result["size"], "records.jsonl"))
    kept, _, xs = predictors(records, result["params"], variant)
    plot_fit(ax, xs["SMI"], [r["acc"] for r in kept], result["fit"]["methods"]["SMI"], "SMI")
    ax.set(
      xlabel="SMI", ylabel="CBQA accuracy", title=f"size {result['size']} ({result['params']:,})"
    )
    ax.legend()
  fig.tight_layout()
  path = os.path.join(workdir, "smi_scaling.png")
  fileio.save_figure(fig, path, dpi=120)
  plt.close(fig)
  return path


def write_markdown(summary: dict[str, Any], path: str) -> None:
  """A short report: the R^2 table per size and what it means."""
  lines = [
    "# SMI scaling study (synthetic knowledge corpus)",
    "",
    "| size | params | final loss | eval loss | mean CBQA acc | triples kept (dropped) | "
    "R^2 CO-OCCUR | R^2 MI | R^2 SMI |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for size, row in summary["sizes"].items():
    r2 = row["r2"]
    lines.append(
      f"| {size} | {row['params']:,} | {row['loss']:.3f} | {row['eval_loss']:.3f} | "
      f"{row['mean_acc']:.3f} | {row['n_triples']} ({row['n_dropped']}) | "
      f"{r2['CO-OCCUR']:.3f} | {r2['MI']:.3f} | {r2['SMI']:.3f} |"
    )
  best = {size: max(row["r2"], key=row["r2"].get) for size, row in summary["sizes"].items()}
  lines += [
    "",
    "R^2 is that of the linear fit of group-mean accuracy on the predictor "
    "(docs/smi.md section 4). Best predictor per size: "
    + ", ".join(f"{size}: {method}" for size, method in best.items())
    + ".",
    "",
    f"Wall time: {summary['wall_time_s']:.0f} s. Figure: smi_scaling.png.",
    "",
  ]
  write_text_atomic(path, "\n".join(lines))
