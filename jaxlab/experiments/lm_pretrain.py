"""Experiment `lm_pretrain`: pretrain a LLaMA-style LM (the core every study builds on).

The config is read once, here, into typed settings; the trainer gets the weighted-CE objective,
the grain pipeline as its data source and a held-out-loss evaluator.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxlab import fileio
from jaxlab.config import ConfigError, check_known_keys, settings_from_section, write_config
from jaxlab.data.checks import check_data
from jaxlab.data.pipeline import build_lm_iterator, default_data_config
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.objectives.lm import LanguageModelObjective
from jaxlab.parallel.mesh import build_mesh, mesh_shape, rules_from_config
from jaxlab.parallel.topology import fit_report, parse_topology, topology_devices
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.flops import train_flops_per_token
from jaxlab.train.optimizer import AdamWSettings, build_optimizer
from jaxlab.train.trainer import Program, Throughput, Trainer, TrainerSettings
from jaxlab.train.wandb_config import WandbSettings
from jaxlab.train.wandb_logging import wandb_settings

logger = logging.getLogger(__name__)
BATCH_DTYPES = {
  "inputs": jnp.int32,
  "targets": jnp.int32,
  "segment_ids": jnp.int32,
  "positions": jnp.int32,
  "loss_weights": jnp.float32,
}


@dataclasses.dataclass(frozen=True)
class LMTrainSettings:
  """The `train` section of an LM run."""

  steps: int = 1000
  global_batch: int = 8
  seq_len: int = 128
  microbatches: int = 1
  log_every: int = 10
  eval_every: int = 100  # 0: at the end only
  max_nonfinite_steps: int = 5  # consecutive skipped (non-finite) steps that end the run

  def validate(self) -> None:
    """Raises ValueError (one line) for counts out of range."""
    for name in (
      "steps",
      "global_batch",
      "seq_len",
      "microbatches",
      "log_every",
      "max_nonfinite_steps",
    ):
      if getattr(self, name) < 1:
        raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
    if self.eval_every < 0:
      raise ValueError(f"train.eval_every must be >= 0 (0: at the end only), got {self.eval_every}")


@dataclasses.dataclass(frozen=True)
class LMSettings:
  """An LM run's config, read once. `data` and `mesh` stay sections: the pipeline and the mesh
  builder read them as a whole."""

  seed: int
  model: TransformerConfig
  optimizer: AdamWSettings
  train: LMTrainSettings
  checkpoint: CheckpointSettings
  data: ml_collections.ConfigDict
  mesh: ml_collections.ConfigDict
  rules: tuple
  topology: str
  wandb: WandbSettings = WandbSettings()

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> LMSettings:
    return cls(
      seed=int(config.seed),
      model=TransformerConfig.from_config(config.model),
      optimizer=settings_from_section(AdamWSettings, config.optimizer, "optimizer"),
      train=settings_from_section(LMTrainSettings, config.train, "train"),
      checkpoint=settings_from_section(CheckpointSettings, config.checkpoint, "checkpoint"),
      data=config.data,
      mesh=config.mesh,
      rules=rules_from_config(config.logical_axis_rules),
      topology=config.topology,
      wandb=wandb_settings(config),
    )

  def trainer_settings(self) -> TrainerSettings:
    train = self.train
    return TrainerSettings(
      steps=train.steps,
      log_every=train.log_every,
      eval_every=train.eval_every,
      checkpoint_every=self.checkpoint.every,
      checkpoint_keep=self.checkpoint.keep,
      async_checkpoints=self.checkpoint.use_async,
      microbatches=train.microbatches,
      seed=self.seed,
      max_nonfinite_steps=train.max_nonfinite_steps,
      init_from=self.checkpoint.init_from,
      wandb=self.wandb,
    )

  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    shape = (self.train.global_batch, self.train.seq_len)
    return {k: jax.ShapeDtypeStruct(shape, dtype) for k, dtype in BATCH_DTYPES.items()}


def lm_init_variables(model: Transformer, seq_len: int):
  """The variable initializer of `model` (logically boxed parameters)."""
  return lambda rng: model.init(rng, jnp.zeros((1, seq_len), jnp.int32))


def lm_program(settings: LMSettings) -> Program:
  model = Transformer(settings.model)
  tx, schedule = build_optimizer(settings.optimizer, settings.train.steps)
  return Program(
    objective=LanguageModelObjective(model),
    init_variables=lm_init_variables(model, settings.train.seq_len),
    tx=tx,
    schedule=schedule,
  )


def _iterator(settings: LMSettings, split: str):
  return build_lm_iterator(
    settings.data,
    seq_len=settings.train.seq_len,
    global_batch=settings.train.global_batch,
    split=split,
    seed=settings.seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def build_trainer(
  config: ml_collections.ConfigDict,
  workdir: str,
  devices: Sequence[jax.Device] | None = None,
  with_data: bool = True,
) -> Trainer:
  """The LM trainer on `devices` (default: all); without data for dry runs and benchmarks."""
  return _build_trainer(LMSettings.from_config(config), workdir, devices, with_data)


def _build_trainer(
  settings: LMSettings, workdir: str, devices: Sequence[jax.Device] | None, with_data: bool
) -> Trainer:
  mesh = build_mesh(settings.mesh, devices)
  data = _iterator(settings, "train") if with_data else None
  trainer = Trainer(
    settings.trainer_settings(),
    lm_program(settings),
    data,
    settings.batch_spec(),
    mesh=mesh,
    rules=settings.rules,
    workdir=workdir,
    summary_fields={
      "flops_per_token": train_flops_per_token(settings.model, settings.train.seq_len)
    },
    throughput=Throughput(
      "tokens",
      settings.train.global_batch * settings.train.seq_len,
      train_flops_per_token(settings.model, settings.train.seq_len),
    ),
  )
  if with_data:
    trainer.add_evaluator("eval", lambda: _iterator(settings, "eval"))
  return trainer


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config cheaply, before anything is written; raises ConfigError (one line).

  A dry run reads no data, so its data settings are not checked."""
  try:
    settings = LMSettings.from_config(config)
    check_known_keys(settings.data, default_data_config(), "data")
    settings.model.validate()
    settings.optimizer.validate()
    settings.train.validate()
    settings.checkpoint.validate()
    settings.wandb.validate()
    num_devices = (
      parse_topology(settings.topology).num_chips if settings.topology else jax.device_count()
    )
  except ValueError as e:
    raise ConfigError(str(e)) from None
  data_size, fsdp_size, _ = mesh_shape(settings.mesh, num_devices)
  train = settings.train
  batch_shards = data_size * fsdp_size
  if train.global_batch % train.microbatches:
    raise ConfigError(
      f"train.global_batch={train.global_batch} is not divisible by "
      f"train.microbatches={train.microbatches}"
    )
  if (train.global_batch // train.microbatches) % batch_shards:
    raise ConfigError(
      f"microbatch size {train.global_batch // train.microbatches} is not "
      f"divisible by the data x fsdp mesh size {batch_shards}"
    )
  if train.seq_len > settings.model.max_seq_len:
    raise ConfigError(
      f"train.seq_len={train.seq_len} exceeds model.max_seq_len={settings.model.max_seq_len}"
    )
  if not dry_run:
    _validate_data(config)
  try:
    _build_trainer(settings, "", _devices(settings), with_data=False)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _devices(settings: LMSettings) -> Sequence[jax.Device] | None:
  return topology_devices(settings.topology) if settings.topology else None


def _validate_data(config: ml_collections.ConfigDict) -> None:
  """Reads the data files once (jaxlab.data.checks) and checks the tokenizer against the model."""
  try:
    vocab = check_data(config.data).vocab_size
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if vocab > config.model.vocab_size:
    raise ConfigError(
      f"tokenizer has {vocab} tokens but model.vocab_size is {config.model.vocab_size}"
    )


def run(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
  """Trains (or resumes) the LM in `workdir` on `devices` (default: all); returns the summary.

  The run records its config.json, which evaluation tools (jaxlab.eval.run_loading) reload."""
  trainer = build_trainer(config, workdir, devices)
  if jax.process_index() == 0:
    write_config(config, workdir)
  return trainer.run()


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles the train step abstractly (for `config.topology`'s TPU slice when set, through
  libtpu on this machine) and writes dry_run.json; `fits` compares bytes with the chip's HBM."""
  settings = LMSettings.from_config(config)
  trainer = _build_trainer(settings, workdir, _devices(settings), with_data=False)
  started = time.perf_counter()
  trainer.compile()
  mesh = trainer.mesh
  result: dict[str, Any] = {
    "params": trainer.num_params(),
    "flops_per_token": train_flops_per_token(settings.model, settings.train.seq_len),
    "bytes_per_device": trainer.bytes_per_device,
    "mesh": dict(zip(mesh.axis_names, (int(s) for s in mesh.devices.shape))),
    "num_devices": int(mesh.devices.size),
    "device_kind": mesh.devices.flat[0].device_kind,
    "global_batch": settings.train.global_batch,
    "seq_len": settings.train.seq_len,
    "compile_s": round(time.perf_counter() - started, 2),
  }
  result.update(fit_report(result["bytes_per_device"], settings.topology))
  fileio.write_json_atomic(os.path.join(workdir, "dry_run.json"), result)
  logger.info("dry run: %s", result)
  return result
