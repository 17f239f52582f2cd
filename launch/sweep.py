"""Expand a grid of config overrides into one launch command per point.

  python launch/sweep.py --config configs/smi_tiny.py --workdir_root runs/lr \
      --grid optimizer.lr=1e-3,3e-3 --grid model.d_model=64,128 [--run]

Prints the commands (or runs them one after another with --run); each point gets its own
workdir named after its overrides. For pods, prefix each command with launch/tpu_pod.sh.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys


def expand(grid: list[str]) -> list[list[tuple[str, str]]]:
  """`["a=1,2", "b=x"]` -> [[("a","1"),("b","x")], [("a","2"),("b","x")]]."""
  axes = []
  for item in grid:
    key, eq, values = item.partition("=")
    if not eq or not values:
      raise SystemExit(f"error: --grid {item!r} must look like key=v1,v2")
    axes.append([(key, v) for v in values.split(",")])
  return [list(point) for point in itertools.product(*axes)]


def commands(config: str, workdir_root: str, grid: list[str]) -> list[list[str]]:
  result = []
  for point in expand(grid):
    name = "_".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point) or "default"
    result.append(
      [
        sys.executable,
        "-m",
        "jaxlab.launch",
        "--config",
        config,
        "--workdir",
        os.path.join(workdir_root, name),
        *(f"--config.{k}={v}" for k, v in point),
      ]
    )
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir_root", required=True)
  parser.add_argument("--grid", action="append", default=[])
  parser.add_argument("--run", action="store_true", help="run the points here, sequentially")
  args = parser.parse_args()
  for command in commands(args.config, args.workdir_root, args.grid):
    print(shlex.join(command), flush=True)
    if args.run:
      subprocess.run(command, check=True)


if __name__ == "__main__":
  main()
