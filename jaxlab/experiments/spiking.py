"""Experiment `spiking`: Spikformer with relative positional encodings (docs/spiking_rpe.md).

`config.task` picks the data and the metric: order (accuracy on a generated relative-distance
task), forecast (R^2 and RSE on a real series), digits (accuracy on 8x8 image patches), canvas
(accuracy on digits at random offsets of a 16x16 canvas, through the SPS stem), words (accuracy
on word-order pairs); `config.model.pe` the positional encoding. Classification runs also report
`test_permutation_p`, a label-permutation test of the final test accuracy. The trainer runs
whole epochs over in-memory data, data parallel on the mesh, evaluates on the test split every
`train.eval_every` epochs and at the end, checkpoints every `checkpoint.every` epochs (and on
SIGTERM) and resumes from the latest checkpoint in the workdir. BatchNorm uses batch statistics
in training (over the global batch, whatever the mesh) and its running averages at evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from jaxlab import fileio
from jaxlab.config import ConfigError, check_known_keys, section_defaults, settings_from_section
from jaxlab.data.source import padded_batches
from jaxlab.data.spiking_tasks import SERIES, TASKS, Split, TaskSpec, load_task, task_spec
from jaxlab.eval.stats import permutation_p_value
from jaxlab.models.spiking import Spikformer, SpikformerConfig
from jaxlab.objectives.supervised import Classification, Predict, Regression
from jaxlab.parallel.mesh import default_mesh_config, mesh_context
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.epochs import EpochTrainSettings, epoch_trainer, shape_only, validate_batch_split
from jaxlab.train.optimizer import AdamWSettings, build_optimizer
from jaxlab.train.trainer import Program, Trainer
from jaxlab.train.wandb_config import WandbSettings
from jaxlab.train.wandb_logging import wandb_settings

logger = logging.getLogger(__name__)

DATA_DEFAULTS = {
  "order": dict(length=32, num_symbols=1, near=2, far=8, num_train=2000, num_test=1000, seed=0),
  "forecast": dict(series="elnino", window=32, horizon=3, test_fraction=0.2),
  "digits": dict(patch_size=2, test_fraction=0.2, seed=0),
  "canvas": dict(canvas=16, train_copies=2, test_copies=8, test_fraction=0.2, seed=0),
  "words": dict(length=8, vocab_size=63, test_fraction=0.2, seed=0),
}


def base_config(task: str, **model_overrides: Any) -> ml_collections.ConfigDict:
  """A complete `spiking` config for `task`; configs/spiking_*.py adjust it."""
  config = ml_collections.ConfigDict()
  config.experiment = "spiking"
  config.task = task
  config.seed = 0  # parameters and shuffling; the data are fixed by data.seed
  config.model = ml_collections.ConfigDict(
    dataclasses.asdict(dataclasses.replace(SpikformerConfig(), **model_overrides))
  )
  config.data = ml_collections.ConfigDict(DATA_DEFAULTS[task])
  config.train = section_defaults(EpochTrainSettings)
  config.train.update(epochs=15, batch_size=64, eval_batch_size=250, eval_every=5)
  config.optimizer = section_defaults(AdamWSettings)
  config.optimizer.update(
    lr=2e-3,
    warmup_steps=50,
    end_lr_fraction=0.01,
    b2=0.999,
    weight_decay=0.01,
    no_decay_patterns=("bias", "scale", "BatchNorm"),
  )
  config.checkpoint = section_defaults(CheckpointSettings)
  config.checkpoint.update(every=5, keep=2, use_async=False)
  config.mesh = default_mesh_config()
  return config


@dataclasses.dataclass(frozen=True)
class SpikingSettings:
  """A spiking run's config, read once; `data` stays a section (the task loaders read it)."""

  task: str
  seed: int
  model: SpikformerConfig
  optimizer: AdamWSettings
  train: EpochTrainSettings
  checkpoint: CheckpointSettings
  data: ml_collections.ConfigDict
  mesh: ml_collections.ConfigDict
  wandb: WandbSettings = WandbSettings()

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> SpikingSettings:
    return cls(
      task=config.task,
      seed=int(config.seed),
      model=SpikformerConfig.from_config(config.model),
      optimizer=settings_from_section(AdamWSettings, config.optimizer, "optimizer"),
      train=settings_from_section(EpochTrainSettings, config.train, "train"),
      checkpoint=settings_from_section(CheckpointSettings, config.checkpoint, "checkpoint"),
      data=config.data,
      mesh=config.mesh,
      wandb=wandb_settings(config),
    )


# ---------------------------------------------------------------- checks before anything runs


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config before anything is written; raises ConfigError (one line).

  A real run also loads the (small) data to check that one batch fits in the training split."""
  if config.task not in TASKS:
    raise ConfigError(f"unknown task {config.task!r}; choose from {', '.join(TASKS)}")
  try:
    settings = SpikingSettings.from_config(config)
    check_known_keys(settings.data, ml_collections.ConfigDict(DATA_DEFAULTS[settings.task]), "data")
    spec = task_spec(settings.task, settings.data)
    settings.model.validate(grid=spec.input_shape[:-1])
    settings.optimizer.validate()
    settings.train.validate(settings.checkpoint)
    validate_batch_split(settings.train, settings.mesh)
    settings.wandb.validate()
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.task == "forecast" and config.data.series not in SERIES:
    raise ConfigError(
      f"unknown data.series {config.data.series!r}; choose from {', '.join(SERIES)}"
    )
  if not dry_run:
    try:
      train_split, _ = load_task(config.task, config.data)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if len(train_split) < settings.train.batch_size:
      raise ConfigError(
        f"train.batch_size={settings.train.batch_size} exceeds the "
        f"{len(train_split)} training examples"
      )


# ---------------------------------------------------------------- model and metrics


def spikformer_predict(model: Spikformer) -> Predict:
  """Outputs and updated BatchNorm statistics (batch statistics in training, running averages
  and no update at evaluation)."""

  def predict(params, model_state, inputs, train):
    variables = {"params": params, **model_state}
    if not train:
      return model.apply(variables, inputs, train=False), model_state
    outputs, updates = model.apply(variables, inputs, train=True, mutable=["batch_stats"])
    return outputs, updates

  return predict


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


def headline_metric(spec: TaskSpec) -> str:
  """The summary's main metric: accuracy for classification, R^2 for forecasting."""
  return "test_accuracy" if spec.is_classification else "test_r2"


def test_outputs(trainer: Trainer, predict: Predict, test: Split, batch_size: int):
  """A function of the train state giving the model's outputs on the whole test split."""
  apply = jax.jit(
    lambda state, x: predict(state.params, state.model_state, x, False)[0],
    in_shardings=(trainer.state_sharding, trainer.batch_sharding),
  )

  def outputs(state) -> np.ndarray:
    chunks = []
    with mesh_context(trainer.mesh, trainer.rules):
      for batch in padded_batches(
        {"inputs": test.inputs}, batch_size, jax.process_index(), jax.process_count()
      ):
        inputs = jax.make_array_from_process_local_data(trainer.batch_sharding, batch["inputs"])
        chunks.append(
          np.asarray(multihost_utils.process_allgather(apply(state, inputs), tiled=True))
        )
    return np.concatenate(chunks)[: len(test)]

  return outputs


def permutation_evaluator(trainer: Trainer, predict: Predict, test: Split, batch_size: int):
  """A hook giving `test_permutation_p`: is the test accuracy above what the same predictions
  reach against randomly permuted labels (jaxlab.eval.stats.permutation_p_value)?"""
  outputs = test_outputs(trainer, predict, test, batch_size)

  def evaluate(state, step):
    del step
    return {"test_permutation_p": permutation_p_value(outputs(state).argmax(-1), test.targets)}

  return evaluate


def forecast_evaluator(trainer: Trainer, predict: Predict, test: Split, batch_size: int):
  """A hook computing test R^2, RSE and MSE from the model's forecasts of the whole test split."""
  outputs = test_outputs(trainer, predict, test, batch_size)

  def evaluate(state, step):
    del step
    predictions = outputs(state)
    return {
      "test_r2": r_squared(test.targets, predictions),
      "test_rse": root_relative_squared_error(test.targets, predictions),
      "test_mse": float(np.mean((predictions - test.targets) ** 2)),
    }

  return evaluate


# ---------------------------------------------------------------- run / dry run


def _trainer(
  settings: SpikingSettings,
  spec: TaskSpec,
  train: Split,
  test: Split | None,
  workdir: str,
  devices: Sequence[jax.Device] | None,
) -> Trainer:
  model = Spikformer(settings.model, spec.num_outputs)
  predict = spikformer_predict(model)
  objective = (
    Classification(predict, settings.train.label_smoothing)
    if spec.is_classification
    else Regression(predict)
  )

  def program(total_steps: int) -> Program:
    tx, schedule = build_optimizer(settings.optimizer, total_steps)
    return Program(
      objective=objective,
      tx=tx,
      schedule=schedule,
      init_variables=lambda rng: model.init(
        rng, np.zeros((1,) + spec.input_shape, np.float32), train=False
      ),
    )

  eval_sets = (
    {"test": {"inputs": test.inputs, "targets": test.targets}}
    if test is not None and spec.is_classification
    else {}
  )
  trainer = epoch_trainer(
    train=settings.train,
    checkpoint=settings.checkpoint,
    seed=settings.seed,
    program_for_steps=program,
    arrays={"inputs": train.inputs, "targets": train.targets},
    eval_sets=eval_sets,
    mesh_cfg=settings.mesh,
    workdir=workdir,
    devices=devices,
    wandb=settings.wandb,
    summary_fields={
      "task": settings.task,
      "pe": settings.model.pe,
      "stem": settings.model.stem,
      "attention": settings.model.attention_kind,
      "seed": settings.seed,
      "metric": headline_metric(spec),
      "test_size": len(test) if test is not None else None,
    },
  )
  if test is not None:
    shards = trainer.mesh.shape["data"] * trainer.mesh.shape["fsdp"]
    batch_size = shards * -(-settings.train.eval_batch_size // shards)
    if spec.is_classification:  # only at the end: the p-value of the reported accuracy
      trainer.add_hook(permutation_evaluator(trainer, predict, test, batch_size), every=0)
    else:
      trainer.add_hook(
        forecast_evaluator(trainer, predict, test, batch_size), every=trainer.settings.eval_every
      )
  return trainer


def build_trainer(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> Trainer:
  """The trainer of the run `config` describes, on `devices` (default: all)."""
  settings = SpikingSettings.from_config(config)
  train, test = load_task(settings.task, settings.data)
  return _trainer(settings, task_spec(settings.task, settings.data), train, test, workdir, devices)


def run(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`, evaluates, and writes summary.json."""
  summary = build_trainer(config, workdir, devices).run()
  logger.info("%s = %.4f", summary["metric"], summary.get(summary["metric"], float("nan")))
  return summary


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles the training step abstractly (no data, nothing trained); writes dry_run.json."""
  settings = SpikingSettings.from_config(config)
  spec = task_spec(settings.task, settings.data)
  batch = settings.train.batch_size
  targets = (
    shape_only((batch,), np.int32)
    if spec.is_classification
    else shape_only((batch, spec.num_outputs), np.float32)
  )
  placeholder = Split(shape_only((batch,) + spec.input_shape, np.float32), targets)
  trainer = _trainer(settings, spec, placeholder, None, workdir, None)
  started = time.perf_counter()
  compiled = trainer.compile()
  memory = compiled.memory_analysis()
  result = {
    "task": settings.task,
    "pe": settings.model.pe,
    "attention": settings.model.attention_kind,
    "params": trainer.num_params(),
    "input_shape": [batch, *spec.input_shape],
    "temp_bytes": int(memory.temp_size_in_bytes) if memory is not None else None,
    "bytes_per_device": trainer.bytes_per_device,
    "compile_s": round(time.perf_counter() - started, 2),
  }
  fileio.write_json_atomic(os.path.join(workdir, "dry_run.json"), result)
  return result
