"""The `dll` experiment: config args, validation errors, tiny runs, resume, and one launch."""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlab.config import ConfigError, apply_overrides, load_config
from jaxlab.data import char_tasks
from jaxlab.experiments import dll

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = ("configs/dll_mlp.py", "configs/dll_cnn.py", "configs/dll_rnn.py")


def _config(spec, **overrides):
  config = load_config(os.path.join(REPO, spec))
  apply_overrides(config, [(k, str(v)) for k, v in overrides.items()])
  return config


@pytest.mark.parametrize("path", CONFIGS)
@pytest.mark.parametrize("method", ["bp", "fa", "dll", "dll_fa"])
def test_every_config_takes_every_method(path, method):
  config = _config(f"{path}:{method}")
  assert config.method == method and config.experiment == "dll"
  dll.validate(config, dry_run=True)


@pytest.mark.parametrize(
  "arg,method,seed",
  [("", "dll", 0), ("bp", "bp", 0), ("dll_fa,seed=2", "dll_fa", 2), ("method=fa", "fa", 0)],
)
def test_method_arg(arg, method, seed):
  config = dll.parse_method_arg(arg, seed=0)
  assert (config.method, config.seed) == (method, seed)


@pytest.mark.parametrize(
  "arg,message",
  [
    ("nope", "unknown config argument 'nope'; a bare word names the method, one of bp, fa,"),
    ("dll,sead=1", "unknown config argument 'sead' (did you mean 'seed'?)"),
    ("bp,fa", "config arg names several methods: bp, fa"),
    ("method=pc", "unknown method 'pc'; choose one of bp, fa, dll, dll_fa"),
  ],
)
def test_bad_method_arg_is_one_line(arg, message):
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    dll.parse_method_arg(arg, seed=0)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize(
  "spec,overrides,message",
  [
    ("configs/dll_mlp.py", {"method": "pc"}, "unknown method 'pc'"),
    ("configs/dll_mlp.py", {"rule.theta_sign": 2.0}, "theta_sign must be +1 or -1"),
    ("configs/dll_mlp.py", {"rule.form": "middle"}, "unknown DLL form 'middle'"),
    (
      "configs/dll_cnn.py",
      {"rule.form": "outer"},
      "rule.form='outer' is available for model.kind='mlp' only",
    ),
    ("configs/dll_cnn.py", {"model.pools": "('max',)"}, "model.pools needs one entry per"),
    (
      "configs/dll_rnn.py",
      {"data.name": "digits"},
      "model.kind='rnn' goes with data.name='stdlib_text'",
    ),
    ("configs/dll_mlp.py", {"train.epochs": 0}, "train.epochs must be at least 1"),
    (
      "configs/dll_mlp.py",
      {"data.name": "mnist", "data.npz_path": "/nonexistent/mnist.npz"},
      "data.npz_path: no file /nonexistent/mnist.npz",
    ),
  ],
)
def test_bad_config_is_one_line(spec, overrides, message):
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    dll.validate(_config(spec, **overrides))
  assert "\n" not in str(info.value)


def _read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


MLP_RUN = ("configs/dll_mlp.py:dll", {"train.epochs": 2, "checkpoint.every": 1})


def test_mlp_run_writes_summary_and_resumes_exactly(tmp_path):
  config = _config(MLP_RUN[0], **MLP_RUN[1])
  whole = dll.run(config, str(tmp_path))
  assert whole["test_accuracy"] > 0.6 and whole["steps_per_epoch"] == 1437 // 64
  assert json.loads((tmp_path / "summary.json").read_text()) == whole
  assert [row["step"] for row in _read_metrics(tmp_path)] == [22, 44]

  # As if interrupted after epoch 1: the rerun restores it and ends with the same parameters.
  shutil.rmtree(tmp_path / "checkpoints" / "44")
  (tmp_path / "summary.json").unlink()
  resumed = dll.run(config, str(tmp_path))
  assert resumed["test_accuracy"] == whole["test_accuracy"]
  assert resumed["loss"] == whole["loss"]
  assert [row["step"] for row in _read_metrics(tmp_path)] == [22, 44]


def test_cnn_learns_digits_in_one_epoch(tmp_path):
  # Batch 16 and a higher rate: 89 small DLL steps take a tiny CNN well above chance (seeded:
  # test accuracy 0.31, loss 2.06 against 0.1 and ln 10 = 2.30 at chance).
  overrides = {
    "model.channels": "(4, 4, 4)",
    "model.hidden": "(8,)",
    "train.epochs": 1,
    "train.batch_size": 16,
    "optimizer.lr": 0.03,
  }
  summary = dll.run(_config("configs/dll_cnn.py:dll", **overrides), str(tmp_path))
  assert summary["steps_per_epoch"] == 1437 // 16 and "validation_accuracy" not in summary
  assert summary["test_accuracy"] > 0.2, summary
  assert summary["test_loss"] < math.log(10) - 0.1, summary


def test_rnn_beats_the_most_frequent_character_on_held_out_text(tmp_path):
  overrides = {
    "model.hidden": 16,
    "data.max_chars": 4000,
    "data.validation_fraction": 0.1,
    "train.epochs": 3,
    "train.batch_size": 8,
    "optimizer.lr": 0.03,
  }
  summary = dll.run(_config("configs/dll_rnn.py:dll_fa", **overrides), str(tmp_path))
  # 124 windows of 32 characters: 12 test, 11 of the other 112 held out for validation.
  assert summary["steps_per_epoch"] == (112 - 11) // 8
  _, test = char_tasks.load_char_task(32, 4000, 0.1)
  # Always guessing the most frequent character (a space) scores 0.17 on the test text; the RNN
  # must use the preceding characters to do better (seeded: 0.25 test, 0.22 validation).
  most_frequent = np.bincount(test.targets.ravel()).max() / test.targets.size
  assert summary["test_accuracy"] > most_frequent + 0.04, summary
  assert summary["validation_accuracy"] > most_frequent + 0.02, summary


def test_dry_run_compiles_without_data(tmp_path):
  config = _config("configs/dll_mlp.py:dll", **{"data.name": "cifar10"})
  dll.validate(config, dry_run=True)
  result = dll.dry_run(config, str(tmp_path))
  assert json.loads((tmp_path / "dry_run.json").read_text()) == result
  # CIFAR-10 inputs (32 * 32 * 3 = 3072) through the 256-128-64 MLP to 10 classes, no biases;
  # every layer holds W and a feedback matrix Theta of the same shape.
  weights = 3072 * 256 + 256 * 128 + 128 * 64 + 64 * 10
  assert (result["method"], result["model"], result["params"]) == ("dll", "mlp", 2 * weights)


def test_launch_end_to_end(tmp_path):
  """The same run as MLP_RUN through the command line (sharing the tests' compilation cache)."""
  workdir = tmp_path / "run"
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  overrides = [f"--config.{k}={v}" for k, v in MLP_RUN[1].items()]
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxlab.launch",
      "--config",
      MLP_RUN[0],
      "--workdir",
      str(workdir),
      *overrides,
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["method"] == "dll" and summary["epochs"] == 2
  assert 0.6 < summary["test_accuracy"] <= 1.0
