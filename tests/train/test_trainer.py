"""The Trainer through the LM study: bitwise resume (plain and after SIGTERM), metrics and
summary files, restore onto another mesh, finished runs left alone, preemption via launch."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxlab.experiments import lm_pretrain
from tests.train.helpers import (
  assert_trees_equal,
  final_state,
  logged,
  metric_rows,
  random_batch,
  sigterm_after,
  tiny_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_interrupted_and_resumed_run_matches_bitwise(tmp_path):
  devices = jax.devices()[:1]
  full = str(tmp_path / "full")
  lm_pretrain.run(tiny_config(), full, devices)
  split = str(tmp_path / "split")
  lm_pretrain.run(tiny_config(steps=3), split, devices)  # "interrupted" after step 3 (checkpointed)
  summary = lm_pretrain.run(tiny_config(), split, devices)  # params, optimizer, rng, data position
  assert summary["step"] == 6
  full_losses, split_losses = logged(full), logged(split)
  assert sorted(split_losses) == [1, 2, 3, 4, 5, 6]
  assert [full_losses[s] for s in range(1, 7)] == [split_losses[s] for s in range(1, 7)]
  assert full_losses[6] < full_losses[1]


def test_sigterm_then_resume_matches_the_uninterrupted_run_bitwise(tmp_path):
  devices = jax.devices()[:1]
  config = tiny_config()
  config.checkpoint.update(every=100)  # only the preemption save and the final one
  full = str(tmp_path / "full")
  whole = lm_pretrain.build_trainer(config, full, devices)
  whole.run()
  split = str(tmp_path / "split")
  stopped = sigterm_after(lm_pretrain.build_trainer(config, split, devices), step=2).run()
  assert stopped["preempted"] and stopped["step"] == 3
  resumed = lm_pretrain.build_trainer(config, split, devices).run()
  assert not resumed["preempted"] and resumed["step"] == 6
  assert logged(split) == logged(full)
  assert_trees_equal(final_state(split, whole), final_state(full, whole))


def test_metrics_files_and_summary(tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(steps=4, eval_every=2)
  summary = lm_pretrain.run(config, workdir, jax.devices()[:1])
  rows = metric_rows(workdir)
  assert all("step" in row for row in rows)
  trained = [row for row in rows if "loss" in row]
  for key in (
    "loss",
    "grad_norm",
    "learning_rate",
    "tokens_per_s",
    "step_time_s",
    "tflops_per_device",
  ):
    assert all(np.isfinite(row[key]) for row in trained), key
  assert [row["step"] for row in rows if "eval_loss" in row] == [2, 4]
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  assert on_disk["step"] == 4 and on_disk["eval_loss"] == summary["eval_loss"]
  assert on_disk["params"] > 0 and on_disk["flops_per_token"] > 0


def test_log_interval_reports_the_mean_of_its_steps(tmp_path):
  every_step, every_third = str(tmp_path / "one"), str(tmp_path / "three")
  lm_pretrain.run(tiny_config(), every_step, jax.devices()[:1])
  lm_pretrain.run(tiny_config(log_every=3), every_third, jax.devices()[:1])
  per_step = logged(every_step)
  averaged = logged(every_third)
  assert sorted(averaged) == [3, 6]
  np.testing.assert_allclose(averaged[3], np.mean([per_step[s] for s in (1, 2, 3)]), rtol=1e-6)


def test_a_finished_run_is_left_as_it_is(tmp_path):
  workdir = str(tmp_path / "run")
  first = lm_pretrain.run(tiny_config(steps=2), workdir, jax.devices()[:1])
  before = {
    name: (tmp_path / "run" / name).read_text() for name in ("summary.json", "metrics.jsonl")
  }
  again = lm_pretrain.run(tiny_config(steps=2), workdir, jax.devices()[:1])
  assert again == json.loads(before["summary.json"]) and again["loss"] == first["loss"]
  assert {n: (tmp_path / "run" / n).read_text() for n in before} == before


def test_resumed_run_does_not_log_redone_steps_twice(tmp_path):
  workdir = str(tmp_path / "run")
  lm_pretrain.run(tiny_config(steps=5), workdir, jax.devices()[:1])  # checkpoints at 3 and 5
  os.system(f"rm -rf {workdir}/checkpoints/5")  # a crash after logging step 5, before its save
  lm_pretrain.run(tiny_config(), workdir, jax.devices()[:1])
  assert [row["step"] for row in metric_rows(workdir) if "loss" in row] == [1, 2, 3, 4, 5, 6]


def test_checkpoint_restores_onto_a_different_mesh(tmp_path):
  """A checkpoint written on data=8 restores onto data=2 x fsdp=2 x tensor=2 with the values the
  training run held in memory at its last step (params and optimizer state)."""
  workdir = str(tmp_path / "run")
  config = tiny_config(steps=3)
  config.mesh.update(data=8)
  trainer = lm_pretrain.build_trainer(config, workdir, jax.devices())
  trained = {}

  def keep(state, step):
    trained.update(step=step, state=jax.device_get(state))

  trainer.add_hook(keep, every=0, at_end=True)
  trainer.run()
  assert trained["step"] == 3
  other = tiny_config(steps=3)
  other.mesh.update(data=2, fsdp=2, tensor=2)
  other_trainer = lm_pretrain.build_trainer(other, workdir, with_data=False)
  state = final_state(workdir, other_trainer)
  assert int(state.step) == 3
  restored = state.params["layers"]["mlp"]["w_gate"]
  assert restored.sharding == other_trainer.state_sharding.params["layers"]["mlp"]["w_gate"]
  assert len(restored.sharding.device_set) == 8
  assert_trees_equal(state.params, trained["state"].params)
  assert_trees_equal(state.opt_state, trained["state"].opt_state)
  initial = jax.device_get(other_trainer.create_state().params)
  assert not np.array_equal(
    initial["layers"]["mlp"]["w_gate"], trained["state"].params["layers"]["mlp"]["w_gate"]
  )


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  command = [
    sys.executable,
    "-m",
    "jaxlab.launch",
    "--config",
    "configs/smi_tiny.py:steps=5000",
    "--workdir",
    str(workdir),
    "--config.train.log_every=1",
    "--config.checkpoint.every=100000",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  process = subprocess.Popen(
    command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
  )
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 0, err.decode()[-2000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["preempted"] and 3 <= summary["step"] < 5000
  stopped = summary["step"]
  steps = [int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()]
  assert steps == [stopped]
  # The same command, now 2 steps longer, restarts from the checkpoint written at SIGTERM.
  command[command.index("configs/smi_tiny.py:steps=5000")] = (
    f"configs/smi_tiny.py:steps={stopped + 2}"
  )
  again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f"at step {stopped}" in again.stderr and "resumed from" in again.stderr
  resumed = json.loads((workdir / "summary.json").read_text())
  assert resumed["step"] == stopped + 2 and not resumed.get("preempted")
  assert sorted(logged(str(workdir))) == list(range(1, stopped + 3))


def test_memory_preflight_refuses_a_step_that_cannot_fit(tmp_path, monkeypatch):
  from jaxlab.config import ConfigError
  from jaxlab.train import trainer as trainer_lib

  monkeypatch.setattr(trainer_lib, "host_available_bytes", lambda: 2**20)  # a 1 MiB host
  trainer = lm_pretrain.build_trainer(tiny_config(), str(tmp_path / "run"), jax.devices()[:1])
  with pytest.raises(
    ConfigError,
    match=r"the train step needs [\d.]+ GiB but this host has "
    r"0\.0 GiB: size it with --dry_run",
  ) as error:
    trainer.run()
  assert "\n" not in str(error.value)
  assert not (tmp_path / "run" / "checkpoints").exists() or not os.listdir(
    tmp_path / "run" / "checkpoints"
  )


def test_interval_means_leave_out_skipped_steps():
  from jaxlab.train.trainer import interval_means

  steps = [
    {"loss": 2.0, "nonfinite": 0.0},
    {"loss": float("nan"), "nonfinite": 1.0},
    {"loss": 4.0, "nonfinite": 0.0},
  ]
  assert interval_means(steps) == {"loss": 3.0, "nonfinite_steps": 1}
  only_bad = interval_means([{"loss": float("inf"), "nonfinite": 1.0}])
  assert np.isnan(only_bad["loss"]) and only_bad["nonfinite_steps"] == 1


def test_metrics_and_summaries_are_strict_json():
  from jaxlab.train.metrics import json_safe

  row = {"loss": float("nan"), "hi": float("inf"), "lo": -float("inf"), "ok": 1.5, "n": [1.0]}
  assert json.dumps(json_safe(row), allow_nan=False) == (
    '{"loss": "nan", "hi": "inf", "lo": "-inf", "ok": 1.5, "n": [1.0]}'
  )


class _StepEchoSource:
  """A policy source: each batch is drawn for the state it is handed (as rollouts would be)."""

  def __init__(self, config):
    self.config, self.seen = config, []

  def next_for(self, state):
    self.seen.append((int(state.step), float(jax.tree.leaves(state.params)[0].sum())))
    return random_batch(self.config, seed=int(state.step))

  def get_state(self):
    return {}

  def set_state(self, state):
    del state

  def close(self):
    pass


def test_a_policy_source_sees_every_updated_state(tmp_path):
  config = tiny_config(steps=4)
  trainer = lm_pretrain.build_trainer(config, str(tmp_path), jax.devices()[:1], with_data=False)
  trainer.data = source = _StepEchoSource(config)
  trainer.run()
  assert [step for step, _ in source.seen] == [0, 1, 2, 3]
  # The parameters moved between calls (the first update has learning rate 0: warm-up).
  assert len({total for _, total in source.seen[1:]}) == 3
