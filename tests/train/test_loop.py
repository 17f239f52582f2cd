import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.loop import train_lm
from jaxlab.train.setup import build_setup
from jaxlab.train.state import with_shardings
from tests.train.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _losses(workdir):
  return {row["step"]: row["loss"] for row in _rows(workdir) if "loss" in row}


def test_interrupted_and_resumed_run_matches_bitwise(tmp_path):
  devices = jax.devices()[:1]
  full = str(tmp_path / "full")
  train_lm(tiny_config(), full, devices)
  split = str(tmp_path / "split")
  train_lm(tiny_config(steps=3), split, devices)  # "interrupted" after step 3 (checkpointed)
  resumed = tiny_config()
  summary = train_lm(resumed, split, devices)  # picks up params, optimizer, rng and data position
  assert summary["step"] == 6
  full_losses, split_losses = _losses(full), _losses(split)
  assert sorted(split_losses) == [1, 2, 3, 4, 5, 6]
  assert [full_losses[s] for s in range(1, 7)] == [split_losses[s] for s in range(1, 7)]
  assert full_losses[6] < full_losses[1]


def test_metrics_files_and_summary(tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(steps=4, eval_every=2)
  summary = train_lm(config, workdir, jax.devices()[:1])
  rows = _rows(workdir)
  assert all("step" in row for row in rows)
  logged = [row for row in rows if "loss" in row]
  for key in ("loss", "grad_norm", "learning_rate", "tokens_per_s", "step_time_s", "tflops_per_device"):
    assert all(np.isfinite(row[key]) for row in logged), key
  assert [row["step"] for row in rows if "eval_loss" in row] == [2, 4]
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  assert on_disk["step"] == 4 and on_disk["eval_loss"] == summary["eval_loss"]
  assert on_disk["params"] > 0 and on_disk["flops_per_token"] > 0


def test_checkpoint_restores_onto_a_different_mesh(tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(steps=3)
  config.mesh.update(data=8)
  train_lm(config, workdir, jax.devices())
  other = tiny_config(steps=3)
  other.mesh.update(data=2, fsdp=2, tensor=2)
  setup = build_setup(other)
  checkpointer = Checkpointer(workdir, other.checkpoint)
  state, data_state = checkpointer.restore(with_shardings(setup.abstract_state, setup.state_sharding))
  checkpointer.close()
  assert int(state.step) == 3 and data_state
  restored = state.params["layers"]["mlp"]["w_gate"]
  assert restored.sharding == setup.state_sharding.params["layers"]["mlp"]["w_gate"]
  original_setup = build_setup(config)
  checkpointer = Checkpointer(workdir, config.checkpoint)
  original, _ = checkpointer.restore(with_shardings(original_setup.abstract_state, original_setup.state_sharding))
  checkpointer.close()
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               state.params, original.params)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  command = [sys.executable, "-m", "jaxlab.launch", "--config", "configs/smi_tiny.py:steps=5000",
             "--workdir", str(workdir), "--config.train.log_every=1", "--config.checkpoint.every=100000"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 0, err.decode()[-2000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["preempted"] and 3 <= summary["step"] < 5000
  steps = [int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()]
  assert steps == [summary["step"]]
