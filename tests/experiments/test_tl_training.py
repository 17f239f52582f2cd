"""The TL-Training study: the smoke configuration end to end through `run`, resuming a finished
and a partial study, one-line errors for bad configs, and the 7B dry run (reduced) for v5p-128."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlab.config import ConfigError, apply_overrides, load_config
from jaxlab.data import tool_task
from jaxlab.data.rollouts import RolloutSource
from jaxlab.experiments import tl_training

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = ("sft", "sft_mae", "sft_mae_pkt", "tl")


def _config(name="tl_tiny.py:smoke", overrides=()):
  config = load_config(os.path.join(REPO, "configs", name))
  apply_overrides(config, overrides)
  return config


def _read(path):
  with open(path) as f:
    return json.load(f)


def _mtimes(workdir):
  return {
    os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
    for root, _, names in os.walk(workdir)
    for name in names
    if name in ("summary.json", "eval.json")
  }


def test_smoke_study_runs_and_resumes(tmp_path):
  workdir = str(tmp_path / "study")
  config = _config()
  tl_training.validate(config)
  out = tl_training.run(config, workdir, jax.devices()[:1])
  results = _read(os.path.join(workdir, "results.json"))
  assert set(results["table"]) == set(METHODS)
  assert results["test_sizes"] == {"clean": 8, "swapped": 8}
  for method in METHODS:
    row = results["results"][method]["0"]
    for name in ("clean", "swapped"):
      scores = row["scores"][name]
      assert scores["n"] == 8 and 0 <= scores["CF"] <= scores["PI"] <= scores["TS"] <= 100
      assert sum(row["categories"][name].values()) == pytest.approx(1.0)
      predictions = os.path.join(workdir, "seed_0", method, f"predictions_{name}.jsonl")
      with open(predictions) as f:
        assert len(f.read().splitlines()) == 8
  # The rule rows: the oracle solves everything, memorized names fail on swapped names.
  assert results["rules"]["clean"]["solve"]["CF"] == 100.0
  assert results["rules"]["swapped"]["canonical_rule"]["TS"] == 0.0
  # The task's word list is written beside the data (task.tokenizer=words).
  assert (tmp_path / "study" / "data" / "vocab.txt").read_text().split() == list(
    tool_task.vocabulary()
  )
  # MAE drops the failed calls of the adverse trajectories from the loss, PKT keeps the rows.
  rows = results["sft_rows"]
  assert rows["sft"]["mae_dropped"] == 0 and rows["sft_mae"]["mae_dropped"] > 0
  assert rows["sft"]["rows"] == rows["sft_mae"]["rows"] + rows["sft_mae"]["mae_dropped"]
  assert rows["sft_mae_pkt"]["rows"] == rows["sft_mae"]["rows"]
  # TL's PPO stage ran from the sft_mae_pkt model and logged its rollouts.
  ppo = results["results"]["tl"]["0"]["ppo"]
  assert set(ppo["first"]) == {
    "rollout_reward",
    "rollout_share_correct",
    "rollout_kl",
    "rollout_explained_variance",
  }
  assert -2.0 <= ppo["last"]["rollout_reward"] <= 1.0 and "value_loss" in ppo
  assert ppo["clip_fraction_mean"] >= 0.0 and ppo["approx_kl_mean"] >= 0.0
  assert _read(os.path.join(workdir, "seed_0", "tl", "ppo", "summary.json"))["step"] == 2
  assert not os.path.exists(os.path.join(workdir, "seed_0", "tl", "train"))  # shares sft_mae_pkt
  report = (tmp_path / "study" / "report.md").read_text()
  assert "| method | clean TS | clean PI | clean CF | swapped TS |" in report
  assert "| rule: solve | 100.0 |" in report and "PPO (per seed" in report
  assert (tmp_path / "study" / "report.png").stat().st_size > 5_000

  # A finished study: nothing is trained or evaluated again, the table is the same.
  before = _mtimes(workdir)
  again = tl_training.run(config, workdir, jax.devices()[:1])
  assert again["table"] == out["table"] and _mtimes(workdir) == before

  # A partial study: TL's PPO stage is stopped by SIGTERM after its first step; the run returns
  # preempted, and the same call finishes it with the scores of the uninterrupted run.
  os.remove(os.path.join(workdir, "seed_0", "tl", "eval.json"))
  shutil.rmtree(os.path.join(workdir, "seed_0", "tl", "ppo"))
  next_for = RolloutSource.next_for

  def stop_at_first_step(self, state):
    if int(state.step) == 0:
      os.kill(os.getpid(), signal.SIGTERM)
    return next_for(self, state)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(RolloutSource, "next_for", stop_at_first_step)
    assert tl_training.run(config, workdir, jax.devices()[:1]) == {"preempted": True}
  ppo_dir = os.path.join(workdir, "seed_0", "tl", "ppo")
  assert _read(os.path.join(ppo_dir, "summary.json"))["step"] == 1
  assert not os.path.exists(os.path.join(workdir, "seed_0", "tl", "eval.json"))
  resumed = tl_training.run(config, workdir, jax.devices()[:1])
  after = _mtimes(workdir)
  changed = {path for path in after if after[path] != before.get(path)}
  assert changed == {
    os.path.join(workdir, "seed_0", "tl", "eval.json"),
    os.path.join(ppo_dir, "summary.json"),
  }
  assert resumed["table"] == out["table"]
  ppo_again = _read(os.path.join(workdir, "results.json"))["results"]["tl"]["0"]["ppo"]
  assert ppo_again["last"] == ppo["last"]


@pytest.mark.parametrize(
  "overrides,message",
  [
    (["--config.methods=('sft', 'dpo')"], "methods must be distinct names from"),
    (["--config.seeds=()"], "seeds must be distinct and at least one, got ()"),
    (["--config.sft.steps=0"], "sft.steps must be at least 1, got 0"),
    (["--config.rl.max_new_tokens=300"], "rl.seq_len=224 leaves no room for a prompt"),
    (["--config.ppo.kl_coef=-1"], "ppo.kl_coef must be >= 0, got -1.0"),
    (["--config.task.levels=('clean', 'loud')"], "task.levels must be from clean, renamed"),
    (["--config.task.kind=files"], "task.train_file not found: ''"),
    (["--config.rl.batch_size=12"], "rl.batch_size=12 is not divisible by the data x fsdp"),
    (["--config.sft.seq_len=4096"], "sft.seq_len=4096 exceeds model.max_seq_len=256"),
    (["--config.task.tokenizer=bpe"], "task.tokenizer must be words or byte, got 'bpe'"),
    (
      ["--config.model.vocab_size=300"],
      "model.vocab_size=300 is smaller than the words tokenizer's",
    ),
    (["--config.ppo.updates_per_batch=0"], "ppo.updates_per_batch must be at least 1"),
  ],
)
def test_bad_configs_are_one_line_errors(overrides, message):
  config = _config()
  apply_overrides(config, [tuple(o[len("--config.") :].split("=", 1)) for o in overrides])
  with pytest.raises(ConfigError) as error:
    tl_training.validate(config)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_launch_finds_the_study_and_refuses_a_bad_config_in_one_line(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxlab.launch",
      "--config",
      "configs/tl_tiny.py:smoke",
      "--workdir",
      str(tmp_path / "x"),
      "--config.rl.temperature=-1",
    ],
    cwd=REPO,
    env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=""),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  assert result.stderr.strip() == "error: rl.temperature must be >= 0 (0: greedy), got -1.0"
  assert not (tmp_path / "x").exists()


@pytest.mark.needs_libtpu
def test_reduced_7b_dry_run_compiles_sft_and_ppo_for_v5p_128(tmp_path):
  """The 7B config on v5p-128 (64 chips, FSDP), made one layer of width 512 with a 4,096-token
  vocabulary and rows of 256 tokens, so that both steps compile in seconds rather than minutes."""
  config = _config(
    "tl_7b.py",
    [
      ("topology", "v5p-128"),
      ("model.n_layers", "1"),
      ("model.vocab_size", "4096"),
      ("model.d_model", "512"),
      ("model.d_ff", "1024"),
      ("model.n_heads", "8"),
      ("model.n_kv_heads", "8"),
      ("sft.seq_len", "256"),
      ("rl.seq_len", "256"),
      ("rl.max_new_tokens", "64"),
    ],
  )
  tl_training.validate(config, dry_run=True)
  result = tl_training.dry_run(config, str(tmp_path))
  assert _read(tmp_path / "dry_run.json") == json.loads(json.dumps(result))
  assert result["num_devices"] == 64 and result["mesh"]["fsdp"] == 64
  sft, ppo = result["sft"], result["ppo"]
  # PPO trains the actor and the critic (backbone + a 512-wide head) and freezes the reference.
  assert ppo["params"] == 2 * sft["params"] + 512 and ppo["frozen_params"] == sft["params"]
  assert sft["frozen_params"] == 0
  assert 0 < sft["bytes_per_device"] < ppo["bytes_per_device"] <= result["hbm_per_device"]
  assert sft["fits"] and ppo["fits"] and result["fits"]


def test_files_tasks_read_the_named_files(tmp_path):
  task = tool_task.ToolTask()
  train = task.train_trajectories(10, np.random.default_rng(0))
  test = task.test_trajectories("swapped", 4, np.random.default_rng(1))
  for name, items in (("train", train), ("test", test)):
    (tmp_path / f"{name}.jsonl").write_text(
      "".join(json.dumps(tool_task.trajectory_record(t)) + "\n" for t in items)
    )
  overrides = [
    ("task.kind", "files"),
    ("task.train_file", str(tmp_path / "train.jsonl")),
    ("task.test_files", f"('noisy={tmp_path / 'test.jsonl'}',)"),
  ]
  config = _config(overrides=overrides)
  tl_training.validate(config)
  data = tl_training._study_data(tl_training.TLStudySettings.from_config(config), str(tmp_path))
  assert data.train == train and data.test_files == {"noisy": str(tmp_path / "test.jsonl")}
  assert data.rules == {}
  apply_overrides(config, [("task.test_files", "('no name',)")])
  with pytest.raises(ConfigError, match="task.test_files entries are name=path"):
    tl_training.validate(config)
