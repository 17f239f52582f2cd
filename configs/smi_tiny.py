"""Tiny LLaMA-style pretraining on CPU: under two minutes, loss falls clearly.

Args (`configs/smi_tiny.py:steps=300`): steps.
"""

from jaxlab import presets
from jaxlab.config import parse_arg


def get_config(arg=None):
  args = parse_arg(arg, steps=300)
  config = presets.lm_config(
    vocab_size=259,
    d_model=128,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=344,
    max_seq_len=256,
    tie_embeddings=True,
  )
  config.train.update(steps=args.steps, global_batch=16, seq_len=128, log_every=10, eval_every=100)
  config.optimizer.update(lr=3e-3, warmup_steps=30, weight_decay=0.01)
  config.checkpoint.update(every=100, keep=2)
  return config
