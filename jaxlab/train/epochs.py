"""Epoch-based studies on in-memory arrays (DLL, spiking): their `train` section, and the
Trainer they run, with cadences in epochs turned into steps and test-set evaluators.

The data are small, so every host holds all of them; an `ArraySource` cuts the global batches,
and evaluation runs over fixed-size padded batches whose padding rows weigh 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxlab.data.source import ArraySource, Batch, padded_batches
from jaxlab.parallel.mesh import build_mesh, default_logical_rules, mesh_shape
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.trainer import Trainer, TrainerSettings
from jaxlab.train.wandb_config import WandbSettings


@dataclasses.dataclass(frozen=True)
class EpochTrainSettings:
  """The `train` section of an epoch-based study (cadences in epochs)."""

  epochs: int = 15
  batch_size: int = 64
  eval_batch_size: int = 250
  eval_every: int = 1
  label_smoothing: float = 0.0
  max_nonfinite_steps: int = 5  # consecutive skipped (non-finite) steps that end the run

  def validate(self, checkpoint: CheckpointSettings) -> None:
    """Raises ValueError (one line) for a count below 1."""
    for name, value in (
      ("train.epochs", self.epochs),
      ("train.batch_size", self.batch_size),
      ("train.eval_batch_size", self.eval_batch_size),
      ("train.eval_every", self.eval_every),
      ("train.max_nonfinite_steps", self.max_nonfinite_steps),
      ("checkpoint.every", checkpoint.every),
      ("checkpoint.keep", checkpoint.keep),
    ):
      if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def batch_shards(mesh_cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> int:
  """How many ways a batch is split (the data x fsdp mesh size)."""
  data, fsdp, _ = mesh_shape(mesh_cfg, jax.device_count() if num_devices is None else num_devices)
  return data * fsdp


def validate_batch_split(train: EpochTrainSettings, mesh_cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError when the mesh does not divide the batch."""
  shards = batch_shards(mesh_cfg)
  if train.batch_size % shards:
    raise ValueError(
      f"train.batch_size={train.batch_size} is not divisible by the data x fsdp mesh size {shards}"
    )


def epoch_trainer(
  *,
  train: EpochTrainSettings,
  checkpoint: CheckpointSettings,
  seed: int,
  program_for_steps,
  arrays: Batch,
  eval_sets: dict[str, Batch],
  mesh_cfg: ml_collections.ConfigDict,
  workdir: str,
  summary_fields: dict[str, Any],
  devices: Sequence[jax.Device] | None = None,
  wandb: WandbSettings | None = None,
) -> Trainer:
  """A Trainer over `arrays` for `train.epochs` epochs, logging once per epoch (also to W&B when
  `wandb` enables it), evaluating the objective on each of `eval_sets` every `eval_every` epochs
  (metrics `{name}_loss`, `{name}_accuracy`, ...) and checkpointing every `checkpoint.every`
  epochs.

  `program_for_steps(total_steps)` builds the Program (its schedule depends on the step count).
  """
  mesh = build_mesh(mesh_cfg, devices)
  source = ArraySource(arrays, train.batch_size, seed, jax.process_index(), jax.process_count())
  steps_per_epoch = source.batches_per_epoch
  settings = TrainerSettings(
    steps=train.epochs * steps_per_epoch,
    log_every=steps_per_epoch,
    eval_every=train.eval_every * steps_per_epoch,
    checkpoint_every=checkpoint.every * steps_per_epoch,
    checkpoint_keep=checkpoint.keep,
    async_checkpoints=checkpoint.use_async,
    seed=seed,
    max_nonfinite_steps=train.max_nonfinite_steps,
    wandb=wandb or WandbSettings(),
  )
  trainer = Trainer(
    settings,
    program_for_steps(settings.steps),
    source,
    array_batch_spec(arrays, train.batch_size),
    mesh=mesh,
    rules=default_logical_rules(),
    workdir=workdir,
    summary_fields={**summary_fields, "epochs": train.epochs, "steps_per_epoch": steps_per_epoch},
  )
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  eval_batch = shards * math.ceil(train.eval_batch_size / shards)
  for name, eval_arrays in eval_sets.items():
    trainer.add_evaluator(
      name,
      lambda a=eval_arrays: padded_batches(a, eval_batch, jax.process_index(), jax.process_count()),
    )
  return trainer


def array_batch_spec(arrays: Batch, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Global batch shapes of `arrays` cut into batches of `batch_size` rows."""
  return {
    name: jax.ShapeDtypeStruct((batch_size,) + a.shape[1:], a.dtype) for name, a in arrays.items()
  }


def shape_only(shape: Sequence[int], dtype: Any) -> np.ndarray:
  """A zero-strided array of `shape` (no memory): stands in for data in dry runs."""
  return np.broadcast_to(np.zeros((), dtype), tuple(shape))
