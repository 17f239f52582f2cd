"""Group-mean linear fit of CBQA accuracy on each predictor (docs/smi.md section 4).

python -m jaxlab.smi.fit --records R.jsonl --params 7e9 [--variant latest|v1] --out DIR

Records (JSONL) carry subj, rel, obj, n_docs, n_subj, n_obj, n_both, acc. Writes DIR/fit.json
{"n_triples", "n_dropped", "methods": {method: {r2, mse, slope, intercept, upper_bound,
n_groups}}}, prints it as a table and saves DIR/scatter_{method}.png per method. n_triples counts
all records read, including the n_dropped ones with MI <= 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxlab import cli, fileio
from jaxlab.smi.metric import METHODS, VARIANTS, model_size_term, predictors
from jaxlab.smi.triples import json_lines, short_repr

COUNT_FIELDS = ("n_docs", "n_subj", "n_obj", "n_both")
# Counts past 2**53 are not exact as floats, and much larger ones underflow the MI formula's
# probabilities to 0 (a ZeroDivisionError); no corpus has that many documents.
MAX_COUNT = 2**53


def _groups(x: Sequence[float], acc: Sequence[float]) -> dict[float, list[float]]:
  """Accuracies grouped by identical predictor value, in increasing predictor order."""
  groups: dict[float, list[float]] = {}
  for xi, ai in zip(x, acc, strict=True):
    groups.setdefault(float(xi), []).append(float(ai))
  return dict(sorted(groups.items()))


def group_mean_fit(x: Sequence[float], acc: Sequence[float]) -> dict[str, float | int]:
  """OLS of group-mean accuracy on the group's predictor value, one unweighted point per group.

  r2 is r^2 of that fit (0 when the group means are all equal); mse is the mean over groups of
  the group's mean squared residual of its triples; upper_bound = slope + intercept, the
  prediction at predictor 1. Needs at least two distinct predictor values.
  """
  groups = _groups(x, acc)
  if len(groups) < 2:
    raise ValueError(f"a line needs at least 2 distinct predictor values, got {len(groups)}")
  gx = np.array(list(groups))
  gy = np.array([np.mean(values) for values in groups.values()])
  dx, dy = gx - gx.mean(), gy - gy.mean()
  sxx, syy, sxy = dx @ dx, dy @ dy, dx @ dy
  slope = sxy / sxx
  intercept = gy.mean() - slope * gx.mean()
  r2 = sxy * sxy / (sxx * syy) if syy > 0 else 0.0
  mse = np.mean(
    [np.mean((np.array(values) - (slope * xg + intercept)) ** 2) for xg, values in groups.items()]
  )
  return {
    "r2": float(r2),
    "mse": float(mse),
    "slope": float(slope),
    "intercept": float(intercept),
    "upper_bound": float(slope + intercept),
    "n_groups": len(groups),
  }


def _result(
  n_triples: int, n_dropped: int, xs: Mapping[str, Sequence[float]], acc: Sequence[float]
) -> dict[str, Any]:
  methods = {}
  for method in METHODS:
    try:
      methods[method] = group_mean_fit(xs[method], acc)
    except ValueError as e:
      raise ValueError(f"{method}: {e} ({n_triples} triples, {n_dropped} dropped)") from None
  return {"n_triples": n_triples, "n_dropped": n_dropped, "methods": methods}


def fit_records(
  records: Sequence[Mapping], params: float, variant: str = "latest"
) -> dict[str, Any]:
  """The fit.json content for one model: predictors of the records, then a fit per method."""
  kept, n_dropped, xs = predictors(records, params, variant)
  return _result(len(records), n_dropped, xs, [r["acc"] for r in kept])


def _check_record(row: Any) -> str | None:
  """What is wrong with one decoded record, or None."""
  if not isinstance(row, dict):
    return "expected a JSON object"
  for key in ("subj", "rel", "obj"):
    if not isinstance(row.get(key), str):
      return f"field {key!r} must be a string, got {short_repr(row.get(key))}"
  for key in COUNT_FIELDS:
    value = row.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
      return f"field {key!r} must be an integer in [0, 2**53], got {short_repr(value)}"
  if (
    row["n_docs"] == 0
    or not row["n_both"] <= min(row["n_subj"], row["n_obj"])
    or max(row["n_subj"], row["n_obj"]) > row["n_docs"]
  ):
    return "counts must satisfy n_both <= n_subj, n_obj <= n_docs and n_docs > 0"
  acc = row.get("acc")
  if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not 0 <= acc <= 1:
    return f"field 'acc' must be a number in [0, 1], got {short_repr(acc)}"
  return None


def load_records(path: str) -> list[dict]:
  """Reads count + accuracy records from JSONL; a bad row raises ValueError naming file:line."""
  records = []
  with fileio.open_file(path, "rb") as f:
    for lineno, row in json_lines(f):
      problem = str(row) if isinstance(row, ValueError) else _check_record(row)
      if problem:
        raise ValueError(f"{path}:{lineno}: {problem}")
      records.append(row)
  return records


def plot_fit(
  ax,
  x: Sequence[float],
  acc: Sequence[float],
  fit: Mapping[str, float],
  label: str,
  color: str | None = None,
) -> None:
  """Draws group means (area by group size) and the fitted line on a matplotlib Axes.

  Reusable for a combined figure, e.g. one call per model size on the same Axes.
  """
  groups = _groups(x, acc)
  sizes = np.array([len(v) for v in groups.values()])
  points = ax.scatter(
    list(groups),
    [np.mean(v) for v in groups.values()],
    s=8 + 120 * sizes / sizes.max(),
    alpha=0.6,
    color=color,
  )
  line_x = np.array([0.0, 1.0])
  ax.plot(
    line_x,
    fit["slope"] * line_x + fit["intercept"],
    color=points.get_facecolor()[0][:3],
    label=f"{label} ($R^2$={fit['r2']:.3f})",
  )


def save_scatter(
  path: str, method: str, x: Sequence[float], acc: Sequence[float], fit: Mapping[str, float]
) -> None:
  """One PNG: group means of accuracy against the method's predictor, with the fit."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  (slow import)

  figure = Figure(figsize=(4.5, 3.5), dpi=120, layout="constrained")
  ax = figure.subplots()
  plot_fit(ax, x, acc, fit, method)
  ax.set(xlabel=f"{method} (normalized)", ylabel="CBQA accuracy (group mean)", xlim=(-0.03, 1.03))
  ax.legend(loc="upper left")
  fileio.save_figure(figure, path)


def format_table(result: Mapping[str, Any]) -> str:
  """fit.json as a fixed-width text table."""
  lines = [
    f"n_triples={result['n_triples']} n_dropped={result['n_dropped']}",
    f"{'method':<9} {'R^2':>6} {'MSE':>8} {'slope':>7} {'intercept':>9} {'upper':>6} {'groups':>6}",
  ]
  for method, f in result["methods"].items():
    lines.append(
      f"{method:<9} {f['r2']:6.3f} {f['mse']:8.4f} {f['slope']:7.3f} "
      f"{f['intercept']:9.3f} {f['upper_bound']:6.3f} {f['n_groups']:6d}"
    )
  return "\n".join(lines)


def _parse_args(argv: Sequence[str]):
  parser = cli.OneLineParser(prog="python -m jaxlab.smi.fit", description=__doc__.split("\n")[0])
  parser.add_argument("--records", required=True, help="JSONL of counts + accuracy per triple.")
  parser.add_argument("--params", required=True, type=float, help="Model parameters, e.g. 7e9.")
  parser.add_argument("--variant", choices=VARIANTS, default="latest", help="SMI variant.")
  parser.add_argument("--out", required=True, help="Directory for fit.json and the plots.")
  return parser.parse_args(argv)


@cli.exit_cleanly_on_interrupt()
def main(argv: Sequence[str]) -> None:
  args = _parse_args(argv)
  try:
    if not math.isfinite(args.params):
      raise ValueError(f"--params must be finite, got {args.params}")
    model_size_term(args.params, args.variant)
    records = load_records(args.records)
    kept, n_dropped, xs = predictors(records, args.params, args.variant)
    acc = [r["acc"] for r in kept]
    result = _result(len(records), n_dropped, xs, acc)
  except (OSError, ValueError) as e:
    cli.fail(str(e))
  fileio.makedirs(args.out)
  for method, fit in result["methods"].items():
    save_scatter(os.path.join(args.out, f"scatter_{method}.png"), method, xs[method], acc, fit)
  fileio.write_text_atomic(os.path.join(args.out, "fit.json"), json.dumps(result, indent=2) + "\n")
  print(format_table(result))
  print(f"wrote {os.path.join(args.out, 'fit.json')} and scatter_*.png", file=sys.stderr)


if __name__ == "__main__":
  main(sys.argv[1:])
