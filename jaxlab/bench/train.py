"""`python -m jaxlab.bench train`: jaxlab's train step vs transformers' LlamaForCausalLM + AdamW."""

from __future__ import annotations

import jax
import numpy as np

from jaxlab import presets as config_presets
from jaxlab.bench.presets import BenchPreset
from jaxlab.bench.timing import Runner
from jaxlab.data.global_batch import to_global_batch
from jaxlab.experiments.lm_pretrain import build_trainer
from jaxlab.train.flops import peak_flops_per_device, train_flops_per_token


def lm_bench_config(preset: BenchPreset, dtype: str = "float32"):
  """An lm_pretrain config with the preset's shapes (one device, fp32 by default). Layers are
  separate modules, not scanned: at these depths that saves XLA:CPU the stacking copies."""
  config = config_presets.lm_config(
    vocab_size=preset.vocab_size,
    d_model=preset.d_model,
    n_layers=preset.n_layers,
    n_heads=preset.n_heads,
    n_kv_heads=preset.n_kv_heads,
    d_ff=preset.d_ff,
    max_seq_len=preset.seq_len,
    dtype=dtype,
    param_dtype="float32",
    scan_layers=False,
  )
  config.mesh.update(data=1, fsdp=1, tensor=1)
  config.train.update(steps=1000, global_batch=preset.batch, seq_len=preset.seq_len)
  return config


def random_tokens(preset: BenchPreset, seed: int = 0) -> np.ndarray:
  return (
    np.random.RandomState(seed)
    .randint(0, preset.vocab_size, (preset.batch, preset.seq_len + 1))
    .astype(np.int32)
  )


def jaxlab_train_runner(preset: BenchPreset, tokens: np.ndarray) -> tuple[Runner, float]:
  """(one compiled train step on the tokens, blocking; model FLOPs per token)."""
  config = lm_bench_config(preset)
  trainer = build_trainer(config, "", jax.devices()[:1], with_data=False)
  step = trainer.compile()
  positions = np.broadcast_to(
    np.arange(preset.seq_len, dtype=np.int32), (preset.batch, preset.seq_len)
  )
  batch = to_global_batch(
    {
      "inputs": tokens[:, :-1],
      "targets": tokens[:, 1:],
      "segment_ids": np.ones((preset.batch, preset.seq_len), np.int32),
      "positions": np.ascontiguousarray(positions),
      "loss_weights": np.ones((preset.batch, preset.seq_len), np.float32),
    },
    trainer.batch_sharding,
  )
  holder = {"state": trainer.create_state()}

  def once():
    holder["state"], metrics = step(holder["state"], batch)
    jax.block_until_ready(metrics["loss"])

  return once, train_flops_per_token(trainer.program.objective.model.cfg, preset.seq_len)


def train_row(preset: BenchPreset, seconds: float, flops_per_token: float) -> dict:
  """The jaxlab table row: step time, tokens/s, TFLOP/s and (where the peak is known) MFU."""
  tokens_per_s = preset.batch * preset.seq_len / seconds
  flops = flops_per_token * tokens_per_s
  row = {
    "impl": "jaxlab",
    "step_s": seconds,
    "tokens_per_s": tokens_per_s,
    "tflops_per_device": flops / 1e12,
  }
  peak = peak_flops_per_device(jax.devices()[0].device_kind)
  if peak:
    row["mfu"] = flops / peak
  return row
