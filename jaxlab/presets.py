"""Shared config presets: the LM pretraining config every study starts from."""

from __future__ import annotations

import ml_collections

from jaxlab.config import section_defaults
from jaxlab.data.pipeline import default_data_config
from jaxlab.experiments.lm_pretrain import LMTrainSettings
from jaxlab.models.transformer import TransformerConfig
from jaxlab.parallel.mesh import default_logical_rules, default_mesh_config
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.optimizer import AdamWSettings

# The small LM's shape: the TransformerConfig fields that have no default.
BASE_SHAPE = dict(vocab_size=512, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=344)


def model_config(**overrides) -> ml_collections.ConfigDict:
  """LLaMA-style model hyper-parameters: TransformerConfig's defaults (they live there only),
  BASE_SHAPE, then `overrides`."""
  model = section_defaults(TransformerConfig)
  model.update(BASE_SHAPE)
  model.update(overrides)
  return model


def lm_config(**model_overrides) -> ml_collections.ConfigDict:
  """A complete `lm_pretrain` config; studies adjust fields after calling this."""
  config = ml_collections.ConfigDict()
  config.experiment = "lm_pretrain"
  config.seed = 0
  config.model = model_config(**model_overrides)
  config.mesh = default_mesh_config()
  config.logical_axis_rules = default_logical_rules()
  config.optimizer = section_defaults(AdamWSettings)
  config.train = section_defaults(LMTrainSettings)
  config.data = default_data_config()
  config.checkpoint = section_defaults(CheckpointSettings)
  config.topology = ""  # a TPU topology such as "v5p-128" for --dry_run ahead-of-time compiles
  return config


SMI_VOCAB_SIZE = 64_000
SMI_SHAPES = {
  "1p6b": dict(d_model=2048, n_layers=26, n_heads=16, n_kv_heads=16, d_ff=5632),
  "7b": dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, d_ff=11008),
  "13b": dict(d_model=5120, n_layers=40, n_heads=40, n_kv_heads=40, d_ff=13824),
}


def smi_llama_config(
  size: str, *, global_batch: int, seq_len: int = 4096
) -> ml_collections.ConfigDict:
  """The SMI study's LLaMA-2-style models (docs/smi.md section 6) for pod-scale pretraining.

  One 64k vocabulary for all sizes keeps every parameter count within 3% of its name:
  1.6B = 26 layers x 2048 (FFN 5632), 7B = 32 x 4096 (FFN 11008), 13B = 40 x 5120 (FFN 13824).
  bf16 compute, fp32 master weights, full remat, FSDP over all chips.
  """
  config = lm_config(
    vocab_size=SMI_VOCAB_SIZE,
    max_seq_len=seq_len,
    dtype="bfloat16",
    remat_policy="full",
    attention_query_block=512,
    **SMI_SHAPES[size],
  )
  config.mesh.update(data=1, fsdp=-1)
  config.train.update(steps=100_000, global_batch=global_batch, seq_len=seq_len, eval_every=1000)
  config.optimizer.update(warmup_steps=2000)  # AdamW, cosine to 10%, wd 0.1, clip 1.0: defaults
  config.checkpoint.update(every=1000)
  config.data.update(kind="jsonl", train_files="")
  config.data.tokenizer.update(kind="sentencepiece", path="")
  return config


def scir_config(**model_overrides) -> ml_collections.ConfigDict:
  """A complete `scir` study config (jaxlab.experiments.scir); sections default to the
  settings dataclasses' defaults."""
  from jaxlab.experiments import scir_settings as scir
  from jaxlab.objectives.scir import SCIRSettings

  config = ml_collections.ConfigDict()
  config.experiment = "scir"
  config.seeds = (0, 1, 2)
  config.methods = scir.METHODS
  config.model = model_config(**model_overrides)
  config.task = section_defaults(scir.TaskSettings)
  config.start = section_defaults(scir.StartSettings)
  config.judge = section_defaults(scir.JudgeSettings)
  config.rounds = section_defaults(scir.RoundSettings)
  config.scir = section_defaults(SCIRSettings)
  config.optimizer = section_defaults(AdamWSettings)
  config.optimizer.update(warmup_steps=10, weight_decay=0.0)
  config.checkpoint = section_defaults(CheckpointSettings)
  config.mesh = default_mesh_config()
  config.logical_axis_rules = default_logical_rules()
  config.topology = ""
  return config
