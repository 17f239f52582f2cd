"""Experiment `spiking`: Spikformer with relative positional encodings (specs/spiking_rpe.md).

`config.task` picks the data and the metric: order (accuracy on a generated relative-distance
task), forecast (R^2 and RSE on a real series), digits (accuracy on 8x8 image patches);
`config.model.pe` the positional encoding. Training runs whole epochs over in-memory data on one
device (the models are small), evaluates on the test split, checkpoints every
`checkpoint.every` epochs (and on SIGTERM) and resumes from the latest checkpoint in the workdir.
Shuffling depends only on (seed, epoch), so a resumed run repeats an uninterrupted one.
BatchNorm uses batch statistics in training and its running averages at evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.config import ConfigError
from jaxlab.data.spiking_tasks import SERIES, TASKS, Split, TaskSpec, load_task, task_spec
from jaxlab.models.spiking import Spikformer, SpikformerConfig
from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.metrics import MetricsWriter, Progress
from jaxlab.train.optimizer import build_optimizer
from jaxlab.train.preemption import PreemptionGuard

logger = logging.getLogger(__name__)

DATA_DEFAULTS = {
    "order": dict(length=32, num_symbols=1, near=2, far=8, num_train=2000, num_test=1000, seed=0),
    "forecast": dict(series="elnino", window=32, horizon=3, test_fraction=0.2),
    "digits": dict(patch_size=2, test_fraction=0.2, seed=0),
}


def base_config(task: str, **model_overrides: Any) -> ml_collections.ConfigDict:
  """A complete `spiking` config for `task`; configs/spiking_*.py adjust it."""
  config = ml_collections.ConfigDict()
  config.experiment = "spiking"
  config.task = task
  config.seed = 0  # parameters and shuffling; the data are fixed by data.seed
  config.model = ml_collections.ConfigDict(
      dataclasses.asdict(dataclasses.replace(SpikformerConfig(), **model_overrides)))
  config.data = ml_collections.ConfigDict(DATA_DEFAULTS[task])
  config.train = ml_collections.ConfigDict(dict(epochs=15, batch_size=64, eval_batch_size=250,
                                                eval_every=5))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=2e-3, warmup_steps=50, decay="cosine", end_lr_fraction=0.01, b1=0.9,
      b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=1.0,
      no_decay_patterns=("bias", "scale", "BatchNorm")))
  config.checkpoint = ml_collections.ConfigDict(dict(every=5, keep=2, use_async=False))
  return config


# ---------------------------------------------------------------- checks before anything runs


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config before anything is written; raises ConfigError (one line).

  A real run also loads the (small) data to check that one batch fits in the training split."""
  if config.task not in TASKS:
    raise ConfigError(f"unknown task {config.task!r}; choose from {', '.join(TASKS)}")
  try:
    spec = task_spec(config.task, config.data)
    SpikformerConfig.from_config(config.model).validate(grid=spec.input_shape[:-1])
    build_optimizer(config.optimizer, 1)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  train = config.train
  if min(train.epochs, train.batch_size, train.eval_batch_size, config.checkpoint.every) < 1:
    raise ConfigError("train.epochs, train.batch_size, train.eval_batch_size and "
                      "checkpoint.every must be >= 1")
  if config.task == "forecast" and config.data.series not in SERIES:
    raise ConfigError(f"unknown data.series {config.data.series!r}; "
                      f"choose from {', '.join(SERIES)}")
  if not dry_run:
    try:
      train_split, _ = load_task(config.task, config.data)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if len(train_split) < train.batch_size:
      raise ConfigError(f"train.batch_size={train.batch_size} exceeds the {len(train_split)} "
                        "training examples")


# ---------------------------------------------------------------- state and steps


@flax.struct.dataclass
class SpikingState:
  """Everything a training step reads and writes (checkpointed as is)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def task_loss(outputs: jax.Array, targets: jax.Array, is_classification: bool) -> jax.Array:
  """Mean softmax cross-entropy on labels, or mean squared error on forecasts."""
  if is_classification:
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()
  return jnp.mean((outputs - targets) ** 2)


def create_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
                 input_shape: tuple[int, ...]) -> SpikingState:
  """Fresh parameters, BatchNorm statistics and optimizer state for `seed`."""
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + input_shape), train=False)
  return SpikingState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=tx.init(variables["params"]))


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    is_classification: bool) -> Callable:
  """Jitted (state, inputs, targets) -> (state, loss); BatchNorm statistics are updated."""

  def train_step(state: SpikingState, inputs: jax.Array, targets: jax.Array):
    def loss_fn(params):
      outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                     inputs, train=True, mutable=["batch_stats"])
      return task_loss(outputs, targets, is_classification), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return SpikingState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state), loss

  return jax.jit(train_step, donate_argnums=0)


def make_predict(model: nn.Module,
                 batch_size: int) -> Callable[[SpikingState, np.ndarray], np.ndarray]:
  """(state, inputs) -> evaluation-mode outputs for all inputs, in zero-padded fixed-size batches
  (one compiled shape; padding cannot leak into outputs since BatchNorm uses running averages)."""
  apply = jax.jit(lambda variables, x: model.apply(variables, x, train=False))

  def predict(state: SpikingState, inputs: np.ndarray) -> np.ndarray:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    outputs = []
    for start in range(0, len(inputs), batch_size):
      chunk = inputs[start:start + batch_size]
      padding = np.zeros((batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)
      outputs.append(np.asarray(apply(variables, np.concatenate([chunk, padding])))[:len(chunk)])
    return np.concatenate(outputs)

  return predict


# ---------------------------------------------------------------- metrics


def r_squared(targets: np.ndarray, predictions: np.ndarray) -> float:
  """Coefficient of determination per forecast horizon, averaged over horizons."""
  residual = ((targets - predictions) ** 2).sum(0)
  total = ((targets - targets.mean(0)) ** 2).sum(0)
  return float(np.mean(1 - residual / total))


def root_relative_squared_error(targets: np.ndarray, predictions: np.ndarray) -> float:
  """RSE = sqrt(sum (y - y_hat)^2) / sqrt(sum (y - mean y)^2) over all test values."""
  residual = ((targets - predictions) ** 2).sum()
  total = ((targets - targets.mean()) ** 2).sum()
  return float(np.sqrt(residual / total))


def evaluation_metrics(outputs: np.ndarray, split: Split,
                       is_classification: bool) -> dict[str, float]:
  """Test accuracy and loss, or R^2, RSE and MSE of the forecasts."""
  if is_classification:
    loss = task_loss(jnp.asarray(outputs), jnp.asarray(split.targets), True)
    return {"test_accuracy": float(np.mean(outputs.argmax(-1) == split.targets)),
            "test_loss": float(loss)}
  return {"test_r2": r_squared(split.targets, outputs),
          "test_rse": root_relative_squared_error(split.targets, outputs),
          "test_mse": float(np.mean((outputs - split.targets) ** 2))}


def headline_metric(spec: TaskSpec) -> str:
  """The summary's main metric: accuracy for classification, R^2 for forecasting."""
  return "test_accuracy" if spec.is_classification else "test_r2"


# ---------------------------------------------------------------- run / dry run


def _model_and_optimizer(config: ml_collections.ConfigDict, spec: TaskSpec, steps: int):
  model = Spikformer(SpikformerConfig.from_config(config.model), spec.num_outputs)
  tx, _ = build_optimizer(config.optimizer, steps)
  return model, tx


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`, evaluates, and writes summary.json."""
  spec = task_spec(config.task, config.data)
  train, test = load_task(config.task, config.data)
  epochs, batch_size = int(config.train.epochs), int(config.train.batch_size)
  steps_per_epoch = len(train) // batch_size
  model, tx = _model_and_optimizer(config, spec, epochs * steps_per_epoch)
  state = create_state(model, tx, int(config.seed), spec.input_shape)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  checkpointer = Checkpointer(workdir, config.checkpoint)
  start_epoch = 0
  if checkpointer.latest_step() is not None:
    state, data_state = checkpointer.restore_like(state)
    start_epoch = int(data_state["epoch"])
    logger.info("resumed from %s at epoch %d", checkpointer.directory, start_epoch)
  logger.info("task %s, pe %s, %s attention: %s parameters, %d steps per epoch", config.task,
              config.model.pe, model.cfg.attention_kind, f"{num_params:,}", steps_per_epoch)

  train_step = make_train_step(model, tx, spec.is_classification)
  predict = make_predict(model, int(config.train.eval_batch_size))
  writer = MetricsWriter(workdir)
  progress = Progress(epochs, initial=start_epoch)
  last: dict[str, float] = {}
  epochs_done = start_epoch
  started = time.perf_counter()
  with PreemptionGuard() as guard:
    for epoch in range(start_epoch, epochs):
      epoch_start = time.perf_counter()
      order = np.random.default_rng([int(config.seed), epoch]).permutation(len(train))
      losses = []
      for i in range(steps_per_epoch):
        batch = order[i * batch_size:(i + 1) * batch_size]
        state, loss = train_step(state, train.inputs[batch], train.targets[batch])
        losses.append(loss)
      done = epochs_done = epoch + 1
      metrics = {"loss": float(np.mean(jax.device_get(losses))),
                 "epoch_time_s": time.perf_counter() - epoch_start}
      if done % int(config.train.eval_every) == 0 or done == epochs or guard.requested:
        metrics.update(evaluation_metrics(predict(state, test.inputs), test,
                                          spec.is_classification))
      last.update(metrics)
      writer.write(done, metrics)
      progress.update(done, metrics)
      if done % int(config.checkpoint.every) == 0 or done == epochs or guard.requested:
        checkpointer.save(done, state, {"epoch": done})
      if guard.requested:
        break
  metric = headline_metric(spec)
  if metric not in last:  # resumed a finished run: nothing trained, evaluate the checkpoint
    last.update(evaluation_metrics(predict(state, test.inputs), test, spec.is_classification))
  checkpointer.close()
  progress.close()
  writer.close()

  summary = {"task": config.task, "pe": config.model.pe, "attention": model.cfg.attention_kind,
             "seed": int(config.seed), "metric": metric, "params": num_params,
             "epochs": epochs, "epochs_done": epochs_done,
             "steps": int(state.step), "wall_time_s": time.perf_counter() - started, **last}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  logger.info("%s = %.4f", metric, summary.get(metric, float("nan")))
  return summary


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles the training step abstractly (no data, nothing trained); writes dry_run.json."""
  spec = task_spec(config.task, config.data)
  model, tx = _model_and_optimizer(config, spec, 1)
  abstract = jax.eval_shape(lambda: create_state(model, tx, int(config.seed), spec.input_shape))
  batch = int(config.train.batch_size)
  target_shape = (batch,) if spec.is_classification else (batch, spec.num_outputs)
  target_dtype = jnp.int32 if spec.is_classification else jnp.float32
  started = time.perf_counter()
  compiled = make_train_step(model, tx, spec.is_classification).lower(
      abstract, jax.ShapeDtypeStruct((batch,) + spec.input_shape, jnp.float32),
      jax.ShapeDtypeStruct(target_shape, target_dtype)).compile()
  memory = compiled.memory_analysis()
  result = {"task": config.task, "pe": config.model.pe,
            "attention": model.cfg.attention_kind,
            "params": sum(x.size for x in jax.tree.leaves(abstract.params)),
            "input_shape": [batch, *spec.input_shape],
            "temp_bytes": int(memory.temp_size_in_bytes) if memory is not None else None,
            "compile_s": round(time.perf_counter() - started, 2)}
  with open(os.path.join(workdir, "dry_run.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result
