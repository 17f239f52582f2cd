"""launch/tpu_pod.sh and launch/slurm_gpu.sbatch run with fake `gcloud` / `srun` first on PATH:
the commands they would hand to the cluster, recorded and checked argument by argument."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

from tests.launch.fakes import REPO, calls, fake_tool, path_with

TPU_POD = REPO / "launch" / "tpu_pod.sh"
SLURM = REPO / "launch" / "slurm_gpu.sbatch"
# Overrides a shell could mangle: a glob, a space, quotes, $ and a backslash.
TRICKY = [
  "--config.data.train_files=/data/shard-*.jsonl",
  "--config.name=two words",
  '--config.note=it\'s "quoted" $HOME \\n',
]


def _bash(script: pathlib.Path, args, bin_dir: pathlib.Path, **env):
  return subprocess.run(
    ["bash", str(script), *args],
    cwd=REPO,
    env={**os.environ, "PATH": path_with(bin_dir), **env},
    capture_output=True,
    text=True,
    stdin=subprocess.DEVNULL,
    timeout=30,
  )


def _remote_argv(remote: str, home: pathlib.Path) -> list[str]:
  """Runs the command gcloud would run on a worker, in a fake ~/jaxlab whose .venv/bin/python
  records its arguments: what jaxlab.launch would receive after the remote shell's parsing."""
  log = fake_tool(home / "jaxlab" / ".venv" / "bin", "python")
  subprocess.run(
    ["bash", "-c", remote],
    env={**os.environ, "HOME": str(home)},
    check=True,
    stdin=subprocess.DEVNULL,
    timeout=30,
  )
  ((argv, _),) = calls(log)
  return argv


def test_tpu_pod_runs_the_launch_on_every_worker(tmp_path):
  log = fake_tool(tmp_path / "bin", "gcloud")
  args = ["my-tpu", "us-east5-a", "configs/smi_7b.py", "/mnt/runs/smi 7b", *TRICKY]
  result = _bash(TPU_POD, args, tmp_path / "bin")
  assert (result.returncode, result.stderr) == (0, "")
  ((argv, _),) = calls(log)
  assert argv[:-1] == [
    "compute",
    "tpus",
    "tpu-vm",
    "ssh",
    "my-tpu",
    "--zone",
    "us-east5-a",
    "--worker=all",
    "--command",
  ]
  remote = argv[-1]
  assert remote.startswith("cd ~/jaxlab && .venv/bin/python -m jaxlab.launch ")
  assert _remote_argv(remote, tmp_path / "home") == [
    "-m",
    "jaxlab.launch",
    "--config",
    "configs/smi_7b.py",
    "--workdir",
    "/mnt/runs/smi 7b",
    *TRICKY,
  ]


def test_tpu_pod_without_overrides_passes_no_empty_argument(tmp_path):
  log = fake_tool(tmp_path / "bin", "gcloud")
  result = _bash(TPU_POD, ["t", "z", "configs/smi_7b.py", "/mnt/runs/x"], tmp_path / "bin")
  assert result.returncode == 0
  ((argv, _),) = calls(log)
  assert argv[-1] == (
    "cd ~/jaxlab && .venv/bin/python -m jaxlab.launch --config configs/smi_7b.py "
    "--workdir /mnt/runs/x"
  )
  assert _remote_argv(argv[-1], tmp_path / "home") == [
    "-m",
    "jaxlab.launch",
    "--config",
    "configs/smi_7b.py",
    "--workdir",
    "/mnt/runs/x",
  ]


def test_tpu_pod_setup_installs_first(tmp_path):
  log = fake_tool(tmp_path / "bin", "gcloud")
  args = ["t", "z", "configs/smi_7b.py", "/mnt/runs/x", "--config.seed=1"]
  assert _bash(TPU_POD, args, tmp_path / "bin", SETUP="1").returncode == 0
  ((argv, _),) = calls(log)
  assert argv[-1] == (
    "cd ~/jaxlab && make install && .venv/bin/python -m jaxlab.launch "
    "--config configs/smi_7b.py --workdir /mnt/runs/x --config.seed=1"
  )


@pytest.mark.parametrize("args", [[], ["t", "z", "configs/smi_7b.py"]])
def test_tpu_pod_usage_error(tmp_path, args):
  log = fake_tool(tmp_path / "bin", "gcloud")
  result = _bash(TPU_POD, args, tmp_path / "bin")
  assert result.returncode == 2
  assert re.fullmatch(r"usage: \S+ TPU_NAME ZONE CONFIG WORKDIR \[overrides...\]\n", result.stderr)
  assert calls(log) == []


def test_slurm_runs_one_distributed_launch_per_node(tmp_path):
  log = fake_tool(tmp_path / "bin", "srun")
  args = ["configs/smi_1p6b.py", "/shared/runs/smi 1p6b", *TRICKY]
  result = _bash(SLURM, args, tmp_path / "bin")
  assert (result.returncode, result.stderr) == (0, "")
  ((argv, _),) = calls(log)
  assert argv == [
    ".venv/bin/python",
    "-m",
    "jaxlab.launch",
    "--config",
    "configs/smi_1p6b.py",
    "--workdir",
    "/shared/runs/smi 1p6b",
    "--distributed=on",
    *TRICKY,
  ]


def test_slurm_header_asks_for_one_task_per_node():
  header = [line for line in SLURM.read_text().splitlines() if line.startswith("#SBATCH")]
  assert "#SBATCH --ntasks-per-node=1" in header
  assert "#SBATCH --exclusive" in header


@pytest.mark.parametrize("args", [[], ["configs/smi_1p6b.py"]])
def test_slurm_usage_error(tmp_path, args):
  log = fake_tool(tmp_path / "bin", "srun")
  result = _bash(SLURM, args, tmp_path / "bin")
  assert result.returncode == 2
  assert re.fullmatch(
    r"usage: sbatch --nodes=N \S+ CONFIG WORKDIR \[overrides...\]\n", result.stderr
  )
  assert calls(log) == []
