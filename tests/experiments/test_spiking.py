import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import r2_score

from jaxlab.config import ConfigError, apply_overrides, load_config
from jaxlab.data.spiking_tasks import load_task
from jaxlab.experiments import spiking
from jaxlab.models.spiking import Spikformer, SpikformerConfig
from jaxlab.parallel.mesh import mesh_context
from jaxlab.train.checkpoints import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_MODEL = {"model.d_model": 16, "model.n_heads": 2, "model.n_layers": 1, "model.mlp_ratio": 2}
TINY_DATA = {
  "order": {
    "data.length": 16,
    "data.near": 2,
    "data.far": 6,
    "data.num_train": 64,
    "data.num_test": 40,
  },
  "forecast": {"data.window": 16, "data.horizon": 1},
  "digits": {},
  "canvas": {"data.train_copies": 2, "data.test_copies": 2},
  "words": {},
}


def _config(name, arg, **overrides):
  config = load_config(f"{REPO}/configs/{name}.py:{arg}")
  task = config.task
  settings = {
    **TINY_MODEL,
    **TINY_DATA[task],
    "train.batch_size": 32,
    "train.eval_batch_size": 64,
    **overrides,
  }
  apply_overrides(config, [(k, str(v)) for k, v in settings.items()])
  return config


def test_launch_trains_evaluates_and_writes_the_summary(tmp_path):
  workdir = tmp_path / "run"
  args = [
    f"--config.{k}={v}"
    for k, v in {**TINY_MODEL, **TINY_DATA["order"], "train.batch_size": 32}.items()
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxlab.launch",
      "--config",
      "configs/spiking_order.py:pe=log,epochs=2",
      "--workdir",
      str(workdir),
      *args,
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["metric"] == "test_accuracy"
  assert (summary["pe"], summary["attention"], summary["epochs"]) == ("log", "xnor", 2)
  assert summary["steps_per_epoch"] == 2 and summary["step"] == 4  # 64 examples, batch 32
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows] == [2, 4]
  assert (rows[-1]["test_accuracy"], rows[-1]["test_loss"]) == (
    summary["test_accuracy"],
    summary["test_loss"],
  )
  # The reported test metrics are those of the saved final model on the 40 test examples,
  # recomputed here without the trainer's evaluation (its padded, sharded batches): the model
  # applied once in evaluation mode (BatchNorm running averages), argmax and cross-entropy in
  # numpy. Catches padding rows counted, the wrong split or labels, or training-mode BatchNorm.
  # (After 4 steps the logits hardly depend on the input, so accuracy is the test split's share
  # of one class, 0.55; the loss, 0.69305, still tells those bugs apart.)
  config = _config("spiking_order", "pe=log,epochs=2")
  trainer = spiking.build_trainer(config, str(workdir))
  checkpointer = Checkpointer(str(workdir))
  try:
    assert checkpointer.latest_step() == 4
    state, _ = checkpointer.restore(trainer.abstract_state_with_shardings())
  finally:
    checkpointer.close()
  _, test = load_task("order", config.data)
  model = Spikformer(SpikformerConfig.from_config(config.model), 2)
  variables = {"params": state.params, **state.model_state}
  with mesh_context(trainer.mesh, trainer.rules):
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, test.inputs)
  logits = np.asarray(logits, np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert len(test.targets) == 40
  accuracy = np.mean(logits.argmax(-1) == test.targets)
  loss = -np.mean(log_probs[np.arange(40), test.targets])
  assert summary["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
  assert summary["test_loss"] == pytest.approx(loss, rel=1e-6)  # 1.3e-7 apart when written


def test_resumed_run_repeats_an_uninterrupted_one(tmp_path):
  config = _config("spiking_order", "pe=gray,epochs=2", **{"checkpoint.every": 1})
  straight = spiking.run(config, str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints" / "4")  # as if preempted after epoch 1 (step 2)
  (tmp_path / "summary.json").unlink()
  resumed = spiking.run(config, str(tmp_path))
  assert resumed["step"] == straight["step"] == 4
  for key in ("loss", "test_loss", "test_accuracy"):
    assert resumed[key] == straight[key]


def test_forecast_reports_r2_and_rse(tmp_path):
  summary = spiking.run(_config("spiking_forecast", "pe=conv,epochs=1"), str(tmp_path))
  assert summary["metric"] == "test_r2"
  # One-step forecasts: RSE^2 = 1 - R^2.
  assert summary["test_rse"] ** 2 == pytest.approx(1 - summary["test_r2"], rel=1e-4)


def test_digits_dry_run_compiles_with_2d_gray_codes(tmp_path):
  result = spiking.dry_run(_config("spiking_digits", "pe=gray2d"), str(tmp_path))
  assert result["input_shape"] == [32, 4, 4, 4] and result["attention"] == "xnor"
  assert (tmp_path / "dry_run.json").exists()


def test_metrics_agree_with_scikit_learn():
  rng = np.random.RandomState(0)
  targets = rng.randn(50, 3)
  predictions = targets + 0.5 * rng.randn(50, 3)
  assert spiking.r_squared(targets, predictions) == pytest.approx(r2_score(targets, predictions))
  expected_rse = np.sqrt(
    ((targets - predictions) ** 2).sum() / ((targets - targets.mean()) ** 2).sum()
  )
  assert spiking.root_relative_squared_error(targets, predictions) == pytest.approx(expected_rse)


# Smoke-sized runs of the new tasks on one device: a one-layer 16-wide model over 2 time steps
# with a higher learning rate (each run about 20 s on one CPU core, mostly compiling).
SMOKE = {"model.time_steps": 2, "optimizer.lr": 5e-3, "train.batch_size": 64}


def _smoke_run(name, arg, workdir, **overrides):
  config = _config(name, arg, **{**SMOKE, **overrides})
  return spiking.run(config, str(workdir), devices=jax.devices()[:1])


def test_canvas_encoding_beats_chance_and_passes_the_permutation_test(tmp_path):
  summary = _smoke_run(
    "spiking_canvas", "pe=conv,epochs=2", tmp_path, **{"data.canvas": 12, "train.batch_size": 32}
  )
  assert (summary["stem"], summary["test_size"]) == ("sps", 718)  # 359 test digits x 2 offsets
  assert summary["test_accuracy"] > 0.3  # 10 classes: chance is 0.1 (this run: 0.52)
  assert summary["test_permutation_p"] < 0.05


@pytest.mark.parametrize("pe", ["none", "conv"])
def test_word_order_is_chance_without_positions_and_learnable_with_them(tmp_path, pe):
  summary = _smoke_run("spiking_words", f"pe={pe},epochs=2", tmp_path)
  assert summary["test_size"] == 3214
  if pe == "none":
    # Each window is in the test set as written and swapped; a permutation-invariant model gives
    # both the same logits, so it is right on exactly one of every pair.
    assert summary["test_accuracy"] == 0.5 and summary["test_permutation_p"] > 0.05
  else:
    assert summary["test_accuracy"] > 0.53  # 3,214 examples: chance's std is 0.009 (run: 0.548)
    assert summary["test_permutation_p"] < 0.05


def test_a_model_that_never_spikes_fails_the_permutation_test(tmp_path):
  """With an unreachable threshold no LIF fires, the logits are the head's bias whatever the
  input, and the test accuracy is no better than the same predictions against shuffled labels."""
  summary = _smoke_run("spiking_words", "pe=conv,epochs=1", tmp_path, **{"model.v_th": 1e9})
  assert summary["test_permutation_p"] > 0.05


@pytest.mark.parametrize(
  "name,arg,overrides,message",
  [
    ("spiking_order", "pe=gray2d", {}, "model.pe='gray2d' needs a 2D token grid"),
    ("spiking_order", "pe=rope", {}, "unknown model.pe 'rope'"),
    ("spiking_order", "pe=gray", {"model.gray_bits": 3}, "model.gray_bits=3 cannot code"),
    ("spiking_order", "pe=none", {"data.far": 40}, "near < far < length"),
    ("spiking_order", "pe=none", {"train.batch_size": 128}, "exceeds the 64 training examples"),
    (
      "spiking_order",
      "pe=none",
      {"train.batch_size": 36},
      "not divisible by the data x fsdp mesh size 8",
    ),
    ("spiking_digits", "pe=gray", {"data.patch_size": 3}, "does not divide the 8x8 digits"),
    ("spiking_forecast", "pe=log", {"data.series": "nile"}, "unknown data.series 'nile'"),
    ("spiking_canvas", "pe=conv", {"data.canvas": 18}, "sides are multiples of 4"),
    ("spiking_canvas", "pe=conv", {"data.canvas": 4}, "smaller than the 8x8 digits"),
    ("spiking_canvas", "pe=gray2d", {"model.stem": "patch"}, "unknown model.stem 'patch'"),
    ("spiking_words", "pe=conv_gray2d", {}, "'conv_gray2d' needs a 2D token grid"),
    ("spiking_words", "pe=none", {"model.stem": "sps"}, "sides are multiples of 4"),
    ("spiking_words", "pe=gray", {"data.length": 1}, "length >= 2"),
  ],
)
def test_bad_configs_fail_validation_in_one_line(name, arg, overrides, message):
  with pytest.raises(ConfigError) as error:
    spiking.validate(_config(name, arg, **overrides))
  assert message in str(error.value) and "\n" not in str(error.value)
