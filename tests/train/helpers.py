"""Small configs and batches shared by the train tests."""

import numpy as np

from jaxlab import presets


def tiny_config(**train):
  config = presets.lm_config(vocab_size=264, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                             d_ff=64, max_seq_len=64)
  config.train.update(steps=6, global_batch=8, seq_len=32, log_every=1, eval_every=0)
  config.train.update(train)
  config.optimizer.update(lr=1e-2, warmup_steps=2)
  config.data.update(synthetic_num_docs=400)
  config.checkpoint.update(every=3, keep=5)
  return config


def random_batch(config, seed=0):
  """A packed-looking batch: two documents per row, some padding, fixed by `seed`."""
  rng = np.random.RandomState(seed)
  batch, length = config.train.global_batch, config.train.seq_len
  split = length // 2
  segment_ids = np.concatenate([np.ones((batch, split)), 2 * np.ones((batch, length - split - 4)),
                                np.zeros((batch, 4))], axis=1).astype(np.int32)
  positions = np.concatenate([np.arange(split), np.arange(length - split - 4), np.zeros(4)])
  return {"inputs": rng.randint(3, 259, (batch, length)).astype(np.int32),
          "targets": rng.randint(3, 259, (batch, length)).astype(np.int32),
          "segment_ids": segment_ids,
          "positions": np.tile(positions, (batch, 1)).astype(np.int32),
          "loss_weights": (segment_ids > 0).astype(np.float32)}
