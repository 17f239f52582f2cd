"""Two processes on one machine (gloo CPU collectives) train one model as a 2-host job: the same
per-step losses as one process with two devices fed the same global batches."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import portpicker

from jaxlab.config import apply_overrides, load_config
from jaxlab.experiments import lm_pretrain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/smi_tiny.py:steps=4"
OVERRIDES = {"train.log_every": "1", "checkpoint.every": "2"}


def _start_two_hosts(workdir):
  port = portpicker.pick_unused_port()
  processes = []
  for process_id in range(2):
    env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="",
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(process_id),
    )
    overrides = [f"--config.{key}={value}" for key, value in OVERRIDES.items()]
    command = [sys.executable, "-m", "jaxlab.launch", "--config", CONFIG, "--workdir", workdir]
    processes.append(
      subprocess.Popen(
        command + overrides,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  return processes


class _TwoHosts:
  """One process's iterator over what two hosts read together: host 0's local batch on top of
  host 1's, each from the pipeline's own shard for that host; checkpointable like theirs."""

  def __init__(self, hosts):
    self.hosts = hosts

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(host) for host in self.hosts]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

  def get_state(self):
    return [host.get_state() for host in self.hosts]

  def set_state(self, states):
    for host, state in zip(self.hosts, states):
      host.set_state(state)

  def close(self):
    for host in self.hosts:
      host.close()


def _as_two_hosts(build_iterator):
  def build(*args, process_index, process_count, **kwargs):
    assert (process_index, process_count) == (0, 1)
    hosts = [build_iterator(*args, process_index=i, process_count=2, **kwargs) for i in range(2)]
    return _TwoHosts(hosts)

  return build


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


def test_two_processes_train_as_one_process_with_two_devices(tmp_path, monkeypatch):
  workdir = str(tmp_path / "two_hosts")
  processes = _start_two_hosts(workdir)

  config = load_config(os.path.join(REPO, CONFIG))
  apply_overrides(config, OVERRIDES.items())
  monkeypatch.setattr(
    lm_pretrain, "build_lm_iterator", _as_two_hosts(lm_pretrain.build_lm_iterator)
  )
  one_host = str(tmp_path / "one_host")
  lm_pretrain.run(config, one_host, jax.devices()[:2])

  outputs = [p.communicate(timeout=300) for p in processes]
  for process, (out, err) in zip(processes, outputs):
    assert process.returncode == 0 and '"preempted": true' not in out, out + err[-2000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["num_devices"] == 2 and summary["step"] == 4
  two_host_losses = _losses(workdir)
  assert sorted(two_host_losses) == [1, 2, 3, 4]  # each step written once, by process 0
  expected = _losses(one_host)
  np.testing.assert_allclose(
    [two_host_losses[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-5
  )
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
