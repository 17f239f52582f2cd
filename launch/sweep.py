"""Expand a grid of config overrides into one launch per point.

  python launch/sweep.py --config configs/smi_tiny.py --workdir_root runs/lr \
      --grid optimizer.lr=1e-3,3e-3 --grid model.d_model=64,128 [--run]

Prints the commands (or runs them one after another with --run); each point gets its own
workdir named after its overrides. For TPU VM slices, prefix each command with launch/tpu_pod.sh.

  python launch/sweep.py --backend gke --config configs/smi_1p6b.py --config configs/smi_7b.py \
      --grid seed=0,1,2 --workdir_root runs/smi --name_prefix scaling --topology v5p-128 \
      --image IMAGE --bucket BUCKET [--config.key=value ...] [--submit]

`--backend gke` writes one JobSet per point (launch/gke_tpu.py) as a multi-document YAML on
stdout, or with --submit pipes them to `kubectl apply -f -`; workdirs are then paths inside the
bucket. `--config` may be given several times: the config files become the grid's first axis and
prefix each point's name. Extra --config.key=value arguments go to every point, unnamed.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from a checkout without `pip install -e .`
  sys.path.append(REPO)

from jaxlab.cli import OneLineParser, fail  # noqa: E402

_GKE_OPTIONS = ("topology", "image", "bucket", "name_prefix")


class Point(NamedTuple):
  config: str  # configs/NAME.py[:ARGS]
  overrides: list[tuple[str, str]]  # the grid's (key, value) pairs at this point
  label: str  # the config's short name, or "" when the sweep has one config


def expand(grid: list[str]) -> list[list[tuple[str, str]]]:
  """`["a=1,2", "b=x"]` -> [[("a","1"),("b","x")], [("a","2"),("b","x")]]."""
  axes = []
  for item in grid:
    key, eq, values = item.partition("=")
    if not eq or not values:
      fail(f"--grid {item!r} must look like key=v1,v2")
    axes.append([(key, v) for v in values.split(",")])
  return [list(point) for point in itertools.product(*axes)]


def config_label(config: str) -> str:
  """`configs/smi_7b.py` -> `smi_7b`; `configs/x.py:smoke` -> `x:smoke`."""
  path, colon, arg = config.partition(":")
  return os.path.splitext(os.path.basename(path))[0] + colon + arg


def points(configs: str | Sequence[str], grid: list[str]) -> list[Point]:
  """Every (config, grid point) pair; the configs are the outer axis."""
  configs = [configs] if isinstance(configs, str) else list(configs)
  many = len(configs) > 1
  return [
    Point(config, overrides, config_label(config) if many else "")
    for config in configs
    for overrides in expand(grid)
  ]


def point_name(point: Point) -> str:
  """The workdir name: `lr=1e-3_d_model=64` (last key component), prefixed by the config's label
  when several configs are swept; `default` for an empty grid of one config."""
  parts = [point.label] if point.label else []
  parts += [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.overrides]
  return "_".join(parts) or "default"


def _check_distinct(names: list[str], kind: str) -> None:
  seen: dict[str, int] = {}
  for i, name in enumerate(names):
    if name in seen:
      fail(f"grid points {seen[name] + 1} and {i + 1} get the same {kind} {name!r}")
    seen[name] = i


def commands(
  config: str | Sequence[str],
  workdir_root: str,
  grid: list[str],
  extra: Sequence[str] = (),
) -> list[list[str]]:
  """One local `python -m jaxlab.launch` command per point; `extra` args go to every point."""
  result = []
  sweep = points(config, grid)
  _check_distinct([point_name(p) for p in sweep], "workdir")
  for point in sweep:
    result.append(
      [
        sys.executable,
        "-m",
        "jaxlab.launch",
        "--config",
        point.config,
        "--workdir",
        os.path.join(workdir_root, point_name(point)),
        *(f"--config.{k}={v}" for k, v in point.overrides),
        *extra,
      ]
    )
  return result


def _gke_tpu():
  """launch/gke_tpu.py, imported only for the gke backend (it loads jax)."""
  here = os.path.dirname(os.path.abspath(__file__))
  if here not in sys.path:
    sys.path.insert(0, here)
  import gke_tpu

  return gke_tpu


def k8s_name(name_prefix: str, point: Point) -> str:
  """`scaling` + smi_7b, seed=0 -> `scaling-smi-7b-seed-0` (lowercase, '-' for the rest)."""
  parts = [point.label] if point.label else []
  parts += [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in point.overrides]
  slugs = [re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-") for part in parts]
  return "-".join([name_prefix, *filter(None, slugs)])


def gke_manifests(
  config: str | Sequence[str],
  workdir_root: str,
  grid: list[str],
  *,
  name_prefix: str,
  topology: str,
  image: str,
  bucket: str,
  extra: Sequence[str] = (),
  **options: Any,
) -> list[dict[str, Any]]:
  """One JobSet per point, named `<name_prefix>-<point>`, its workdir `<workdir_root>/<point>`
  inside the bucket; ValueError for bad input. `options` go to gke_tpu.jobset_manifest."""
  gke_tpu = _gke_tpu()
  hosts = gke_tpu.slice_shape(topology).hosts
  gke_tpu.check_name(name_prefix, hosts, what="--name_prefix")
  sweep = points(config, grid)
  names = [k8s_name(name_prefix, p) for p in sweep]
  _check_distinct(names, "JobSet name")
  for name in names:
    gke_tpu.check_name(name, hosts, what="JobSet name")
  _check_distinct([point_name(p) for p in sweep], "workdir")
  return [
    gke_tpu.jobset_manifest(
      name=name,
      config=point.config,
      topology=topology,
      image=image,
      bucket=bucket,
      workdir=os.path.join(workdir_root, point_name(point)),
      overrides=[*(f"--config.{k}={v}" for k, v in point.overrides), *extra],
      labels={"jaxlab/sweep": name_prefix},
      **options,
    )
    for name, point in zip(names, sweep)
  ]


def main(argv: Sequence[str] | None = None) -> None:
  parser = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
  parser.add_argument(
    "--config", action="append", required=True, help="configs/NAME.py[:ARGS]; repeat to sweep"
  )
  parser.add_argument("--workdir_root", required=True)
  parser.add_argument("--grid", action="append", default=[])
  parser.add_argument("--backend", choices=("local", "gke"), default="local")
  parser.add_argument("--run", action="store_true", help="run the points here, sequentially")
  parser.add_argument("--submit", action="store_true", help="gke: kubectl apply the JobSets")
  parser.add_argument("--name_prefix", help="gke: JobSet names are <name_prefix>-<point>")
  parser.add_argument("--topology", help="gke: TPU slice of every point, e.g. v5p-128")
  parser.add_argument("--image", help="gke: container image holding this repository")
  parser.add_argument("--bucket", help="gke: bucket mounted at /bucket; workdirs live in it")
  parser.add_argument("--namespace", help="gke: Kubernetes namespace")
  parser.add_argument("--service_account", help="gke: service account allowed to use the bucket")
  parser.add_argument("--max_restarts", type=int, help="gke: JobSet restarts after a failure")
  args, extra = parser.parse_known_args(argv)
  for arg in extra:
    if not arg.startswith("--config.") or "=" not in arg:
      fail(f"unexpected argument {arg!r}: overrides for every point look like --config.key=value")
  if args.backend == "local":
    given = [f"--{o}" for o in (*_GKE_OPTIONS, "namespace", "service_account", "max_restarts")]
    given = [o for o in given if getattr(args, o[2:]) is not None] + ["--submit"] * args.submit
    if given:
      fail(f"{given[0]} is for --backend gke")
    for command in commands(args.config, args.workdir_root, args.grid, extra):
      print(shlex.join(command), flush=True)
      if args.run:
        subprocess.run(command, check=True)
    return
  if args.run:
    fail("--run is for the local backend; --backend gke submits with --submit")
  missing = [f"--{o}" for o in _GKE_OPTIONS if not getattr(args, o)]
  if missing:
    fail(f"--backend gke needs {', '.join(missing)}")
  options = {
    o: getattr(args, o)
    for o in ("namespace", "service_account", "max_restarts")
    if getattr(args, o) is not None
  }
  try:
    gke_tpu = _gke_tpu()
    manifests = gke_manifests(
      args.config,
      args.workdir_root,
      args.grid,
      name_prefix=args.name_prefix,
      topology=args.topology,
      image=args.image,
      bucket=args.bucket,
      extra=extra,
      **options,
    )
    text = gke_tpu.to_yaml(manifests)
    if not args.submit:
      sys.stdout.write(text)
      return
    sys.exit(gke_tpu.kubectl_apply(text))
  except ValueError as e:
    fail(str(e))


if __name__ == "__main__":
  main()
