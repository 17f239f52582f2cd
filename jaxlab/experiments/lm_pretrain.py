"""Experiment `lm_pretrain`: pretrain a LLaMA-style LM (the core every study builds on)."""

from __future__ import annotations

import glob
from typing import Any

import jax
import ml_collections

from jaxlab.config import ConfigError
from jaxlab.data.tokenizers import build_tokenizer
from jaxlab.models.transformer import TransformerConfig
from jaxlab.parallel.mesh import mesh_shape
from jaxlab.parallel.topology import parse_topology, topology_devices
from jaxlab.train.dry_run import dry_run_lm
from jaxlab.train.loop import train_lm
from jaxlab.train.setup import build_setup


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config cheaply, before anything is written; raises ConfigError (one line).

  A dry run reads no data, so its data settings are not checked."""
  try:
    TransformerConfig.from_config(config.model).validate()
    num_devices = (parse_topology(config.topology).num_chips if config.topology
                   else jax.device_count())
  except ValueError as e:
    raise ConfigError(str(e)) from None
  data_size, fsdp_size, _ = mesh_shape(config.mesh, num_devices)
  train = config.train
  batch_shards = data_size * fsdp_size
  if train.global_batch % train.microbatches:
    raise ConfigError(f"train.global_batch={train.global_batch} is not divisible by "
                      f"train.microbatches={train.microbatches}")
  if (train.global_batch // train.microbatches) % batch_shards:
    raise ConfigError(f"microbatch size {train.global_batch // train.microbatches} is not "
                      f"divisible by the data x fsdp mesh size {batch_shards}")
  if train.seq_len > config.model.max_seq_len:
    raise ConfigError(f"train.seq_len={train.seq_len} exceeds model.max_seq_len="
                      f"{config.model.max_seq_len}")
  if not dry_run:
    _validate_data(config)
  try:
    build_setup(config, topology_devices(config.topology) if config.topology else None)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _validate_data(config: ml_collections.ConfigDict) -> None:
  data = config.data
  if data.kind != "synthetic":
    for field in ("train_files", "eval_files"):
      for pattern in filter(None, data[field].split(",")):
        if not glob.glob(pattern):
          raise ConfigError(f"data.{field}: no file matches {pattern!r}")
    if not data.train_files:
      raise ConfigError(f"data.kind={data.kind!r} needs data.train_files")
  try:
    vocab = build_tokenizer(data.tokenizer).vocab_size
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if vocab > config.model.vocab_size:
    raise ConfigError(f"tokenizer has {vocab} tokens but model.vocab_size is "
                      f"{config.model.vocab_size}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  return train_lm(config, workdir)


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  return dry_run_lm(config, workdir)
