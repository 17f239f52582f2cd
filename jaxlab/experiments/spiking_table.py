"""The spiking runs' results table: the headline metric of every (task, pe) as mean +- std over
seeds, with the seed count, test-set size and mean wall time, from the summary.json files of
finished runs (one workdir per run).

    python -m jaxlab.experiments.spiking_table WORKDIR [WORKDIR ...]
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Sequence
from typing import Any

from jaxlab import fileio
from jaxlab.cli import OneLineParser, fail
from jaxlab.eval.stats import mean_std
from jaxlab.models.spiking import POSITIONAL_ENCODINGS


def results_table(summaries: Sequence[dict[str, Any]]) -> str:
  """A markdown table, one row per (task, pe) in first-seen task order and the model's
  POSITIONAL_ENCODINGS order: metric mean +- std, seeds, test size, wall time (training run)
  mean in seconds."""
  groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
  for summary in summaries:
    groups[summary["task"], summary["pe"]].append(summary)
  tasks = list(dict.fromkeys(task for task, _ in groups))
  lines = [
    "| task | pe | metric | mean +- std | seeds | test size | wall s |",
    "|---|---|---|---|---|---|---|",
  ]
  for task in tasks:
    for pe in POSITIONAL_ENCODINGS:
      runs = groups.get((task, pe))
      if not runs:
        continue
      metric = runs[0]["metric"]
      mean, std = mean_std([run[metric] for run in runs])
      wall, _ = mean_std([run["wall_time_s"] for run in runs])
      lines.append(
        f"| {task} | {pe} | {metric} | {mean:.3f} +- {std:.3f} | {len(runs)} | "
        f"{runs[0]['test_size']} | {wall:.0f} |"
      )
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  """Prints the table; a workdir without a readable summary.json (an unfinished run, a typo) is
  a one-line error naming it."""
  parser = OneLineParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", help="finished spiking runs' workdirs")
  args = parser.parse_args(argv)
  summaries = []
  for workdir in args.workdirs:
    path = f"{workdir}/summary.json"
    if not fileio.isfile(path):
      fail(f"{path}: no such file (is {workdir} a finished spiking run?)")
    try:
      summaries.append(fileio.read_json(path))
    except ValueError as e:
      fail(f"{path}: not JSON ({e})")
  try:
    print(results_table(summaries))
  except KeyError as e:
    fail(f"a summary.json lacks {e}; is every workdir a spiking run?")


if __name__ == "__main__":
  main(sys.argv[1:])
