"""launch/sweep.py: the local backend's commands as before, and `--backend gke`: one JobSet per
grid point (parsed back from the YAML), --submit through a fake kubectl, bad input."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from tests.cli_helpers import run_main
from tests.launch.fakes import REPO, calls, fake_tool, launcher, path_with

sweep = launcher("sweep")

SIZES = ["configs/smi_1p6b.py", "configs/smi_7b.py", "configs/smi_13b.py"]
GKE = [
  "--backend",
  "gke",
  "--workdir_root",
  "runs/smi",
  "--grid",
  "seed=0,1,2",
  "--name_prefix",
  "scaling",
  "--topology",
  "v5p-128",
  "--image",
  "img:1",
  "--bucket",
  "my-bucket",
]
DATA = "--config.data.train_files=/bucket/data/*.jsonl"


def _configs(*paths):
  return [arg for path in paths for arg in ("--config", path)]


def test_local_backend_prints_the_same_commands_as_before():
  """The docstring's example, as the local backend has always printed it."""
  result = subprocess.run(
    [sys.executable, "launch/sweep.py", "--config", "configs/smi_tiny.py"]
    + ["--workdir_root", "runs/lr", "--grid", "optimizer.lr=1e-3,3e-3"]
    + ["--grid", "model.d_model=64,128"],
    cwd=REPO,
    capture_output=True,
    text=True,
    stdin=subprocess.DEVNULL,
    timeout=60,
  )
  assert (result.returncode, result.stderr) == (0, "")
  head = f"{shlex.quote(sys.executable)} -m jaxlab.launch --config configs/smi_tiny.py --workdir"
  assert result.stdout.splitlines() == [
    f"{head} runs/lr/lr=1e-3_d_model=64 --config.optimizer.lr=1e-3 --config.model.d_model=64",
    f"{head} runs/lr/lr=1e-3_d_model=128 --config.optimizer.lr=1e-3 --config.model.d_model=128",
    f"{head} runs/lr/lr=3e-3_d_model=64 --config.optimizer.lr=3e-3 --config.model.d_model=64",
    f"{head} runs/lr/lr=3e-3_d_model=128 --config.optimizer.lr=3e-3 --config.model.d_model=128",
  ]


def test_local_backend_several_configs_and_shared_overrides():
  got = sweep.commands(SIZES[:2], "runs/smi", ["seed=0,1"], extra=[DATA])
  assert all(command.pop() == DATA for command in got)
  head = [sys.executable, "-m", "jaxlab.launch", "--config"]
  assert got == [
    [*head, "configs/smi_1p6b.py", "--workdir", "runs/smi/smi_1p6b_seed=0", "--config.seed=0"],
    [*head, "configs/smi_1p6b.py", "--workdir", "runs/smi/smi_1p6b_seed=1", "--config.seed=1"],
    [*head, "configs/smi_7b.py", "--workdir", "runs/smi/smi_7b_seed=0", "--config.seed=0"],
    [*head, "configs/smi_7b.py", "--workdir", "runs/smi/smi_7b_seed=1", "--config.seed=1"],
  ]
  assert sweep.commands("configs/smi_tiny.py", "runs/x", []) == [
    [*head, "configs/smi_tiny.py", "--workdir", "runs/x/default"]
  ]


def _container(doc):
  (replicated,) = doc["spec"]["replicatedJobs"]
  (container,) = replicated["template"]["spec"]["template"]["spec"]["containers"]
  return container


def _command(doc):
  return _container(doc)["command"]


def test_gke_backend_one_jobset_per_point_sizes_x_seeds(capsys):
  status, out, err = run_main(sweep.main, [*GKE, *_configs(*SIZES), DATA], capsys)
  assert (status, err) == (0, "")
  docs = list(yaml.safe_load_all(out))
  assert len(docs) == 9
  names = [d["metadata"]["name"] for d in docs]
  assert names == [
    f"scaling-smi-{size}-seed-{seed}" for size in ("1p6b", "7b", "13b") for seed in (0, 1, 2)
  ]
  for doc, size, seed in [(d, n.split("-")[2], n[-1]) for d, n in zip(docs, names)]:
    command = _command(doc)
    assert command == [
      "python",
      "-m",
      "jaxlab.launch",
      "--config",
      f"configs/smi_{size}.py",
      "--workdir",
      f"/bucket/runs/smi/smi_{size}_seed={seed}",
      "--distributed=on",
      f"--config.seed={seed}",
      DATA,
    ]
    assert doc["metadata"]["labels"] == {"jaxlab/sweep": "scaling"}
    env = {e["name"]: e.get("value") for e in _container(doc)["env"]}
    name = doc["metadata"]["name"]
    assert env["JAX_COORDINATOR_ADDRESS"] == f"{name}-slice-0-0.{name}:8482"
    assert doc["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 16
  assert len({c[c.index("--workdir") + 1] for c in map(_command, docs)}) == 9


def test_gke_backend_one_config_names_by_point(capsys):
  argv = [*GKE, "--config", "configs/smi_tiny.py", "--grid", "optimizer.lr=1e-3,3E-3"]
  status, out, err = run_main(sweep.main, argv, capsys)
  assert (status, err) == (0, "")
  docs = list(yaml.safe_load_all(out))
  assert [d["metadata"]["name"] for d in docs] == [
    "scaling-seed-0-lr-1e-3",
    "scaling-seed-0-lr-3e-3",
    "scaling-seed-1-lr-1e-3",
    "scaling-seed-1-lr-3e-3",
    "scaling-seed-2-lr-1e-3",
    "scaling-seed-2-lr-3e-3",
  ]
  assert _command(docs[1])[6] == "/bucket/runs/smi/seed=0_lr=3E-3"


def test_gke_submit_applies_every_jobset_in_one_kubectl_call(tmp_path, monkeypatch, capsys):
  log = fake_tool(tmp_path / "bin", "kubectl", say="created\n")
  monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
  status, out, err = run_main(sweep.main, [*GKE, *_configs(*SIZES), "--submit"], capsys)
  assert (status, err) == (0, "")
  ((argv, stdin),) = calls(log)
  assert argv == ["apply", "-f", "-"]
  submitted = list(yaml.safe_load_all(stdin))
  assert [d["metadata"]["name"] for d in submitted] == [
    d["metadata"]["name"]
    for d in yaml.safe_load_all(run_main(sweep.main, [*GKE, *_configs(*SIZES)], capsys)[1])
  ]
  assert len(submitted) == 9


@pytest.mark.parametrize(
  "argv,message",
  [
    ([*GKE, "--config", "configs/smi_7b.py", "--run"], "error: --run is for the local backend"),
    (
      ["--config", "configs/smi_7b.py", "--workdir_root", "r", "--submit"],
      "error: --submit is for --backend gke",
    ),
    (
      ["--config", "configs/smi_7b.py", "--workdir_root", "r", "--topology", "v5p-8"],
      "error: --topology is for --backend gke",
    ),
    (
      ["--backend", "gke", "--config", "configs/smi_7b.py", "--workdir_root", "r"],
      "error: --backend gke needs --topology, --image, --bucket, --name_prefix",
    ),
    (
      [*GKE, "--config", "configs/smi_7b.py", "--grid", "lr=1e-3,1e.3"],
      "error: grid points 1 and 2 get the same JobSet name 'scaling-seed-0-lr-1e-3'",
    ),
    ([*GKE, "--config", "configs/smi_7b.py", "--grid", "lr"], "error: --grid 'lr' must look like"),
    ([*GKE, "--config", "configs/smi_7b.py", "--bogus"], "error: unexpected argument '--bogus'"),
    (
      [*GKE, "--config", "configs/smi_7b.py", "--name_prefix", "Big"],
      "error: --name_prefix 'Big' must be a DNS-1035 label",
    ),
    (
      [*GKE, "--config", "configs/smi_7b.py", "--name_prefix", "a" * 40],
      f"error: JobSet name '{'a' * 40}-seed-0' is too long",
    ),
    ([*GKE, "--config", "configs/nope.py"], "error: config file not found: configs/nope.py"),
    ([*GKE, "--config", "configs/smi_7b.py", "--topology", "v5p-7"], "error: invalid TPU"),
  ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
  status, out, err = run_main(sweep.main, argv, capsys)
  assert (status, out) == (2, "")
  assert err.startswith(message), err
  assert err.count("\n") == 1
