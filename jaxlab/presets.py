"""Shared config presets: the LM pretraining config every study starts from."""

from __future__ import annotations

import ml_collections

from jaxlab.data.pipeline import default_data_config
from jaxlab.parallel.mesh import default_logical_rules


def model_config(**overrides) -> ml_collections.ConfigDict:
  """LLaMA-style model hyper-parameters (see jaxlab.models.transformer.TransformerConfig)."""
  model = ml_collections.ConfigDict(dict(
      vocab_size=512, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=344,
      max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False,
      param_dtype="float32", dtype="float32", remat_policy="none", scan_layers=True,
      attention_impl="xla", attention_query_block=64, loss_impl="xla", init_std=0.02))
  model.update(overrides)
  return model


def lm_config(**model_overrides) -> ml_collections.ConfigDict:
  """A complete `lm_pretrain` config; studies adjust fields after calling this."""
  config = ml_collections.ConfigDict()
  config.experiment = "lm_pretrain"
  config.seed = 0
  config.model = model_config(**model_overrides)
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  config.logical_axis_rules = default_logical_rules()
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=3e-4, warmup_steps=100, decay="cosine", end_lr_fraction=0.1, b1=0.9,
      b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0, no_decay_patterns=("norm",)))
  config.train = ml_collections.ConfigDict(dict(
      steps=1000, global_batch=8, seq_len=128, microbatches=1, log_every=10, eval_every=100))
  config.data = default_data_config()
  config.checkpoint = ml_collections.ConfigDict(dict(every=500, keep=3, use_async=True))
  config.topology = ""  # a TPU topology such as "v5p-128" for --dry_run ahead-of-time compiles
  return config


SMI_VOCAB_SIZE = 64_000
SMI_SHAPES = {
    "1p6b": dict(d_model=2048, n_layers=26, n_heads=16, n_kv_heads=16, d_ff=5632),
    "7b": dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, d_ff=11008),
    "13b": dict(d_model=5120, n_layers=40, n_heads=40, n_kv_heads=40, d_ff=13824),
}


def smi_llama_config(size: str, *, global_batch: int, seq_len: int = 4096) -> ml_collections.ConfigDict:
  """The SMI study's LLaMA-2-style models (specs/smi.md section 6) for pod-scale pretraining.

  One 64k vocabulary for all sizes keeps every parameter count within 3% of its name:
  1.6B = 26 layers x 2048 (FFN 5632), 7B = 32 x 4096 (FFN 11008), 13B = 40 x 5120 (FFN 13824).
  bf16 compute, fp32 master weights, full remat, FSDP over all chips.
  """
  config = lm_config(vocab_size=SMI_VOCAB_SIZE, max_seq_len=seq_len, param_dtype="float32",
                     dtype="bfloat16", remat_policy="full", attention_query_block=512,
                     **SMI_SHAPES[size])
  config.mesh.update(data=1, fsdp=-1, tensor=1)
  config.train.update(steps=100_000, global_batch=global_batch, seq_len=seq_len, log_every=10,
                      eval_every=1000)
  config.optimizer.update(lr=3e-4, warmup_steps=2000, decay="cosine", end_lr_fraction=0.1,
                          weight_decay=0.1, clip_norm=1.0)
  config.checkpoint.update(every=1000, keep=3)
  config.data.update(kind="jsonl", train_files="")
  config.data.tokenizer.update(kind="sentencepiece", path="")
  return config
