"""Small configs and batches shared by the train tests."""

import json
import os
import signal

import jax
import numpy as np

from jaxlab import presets
from jaxlab.train.checkpoints import Checkpointer


def tiny_config(**train):
  config = presets.lm_config(
    vocab_size=264, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64
  )
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
  segment_ids = np.concatenate(
    [np.ones((batch, split)), 2 * np.ones((batch, length - split - 4)), np.zeros((batch, 4))],
    axis=1,
  ).astype(np.int32)
  positions = np.concatenate([np.arange(split), np.arange(length - split - 4), np.zeros(4)])
  return {
    "inputs": rng.randint(3, 259, (batch, length)).astype(np.int32),
    "targets": rng.randint(3, 259, (batch, length)).astype(np.int32),
    "segment_ids": segment_ids,
    "positions": np.tile(positions, (batch, 1)).astype(np.int32),
    "loss_weights": (segment_ids > 0).astype(np.float32),
  }


def metric_rows(workdir):
  """Rows of a run's metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def logged(workdir, key="loss"):
  """{step: value} of `key` over a run's metrics.jsonl."""
  return {row["step"]: row[key] for row in metric_rows(workdir) if key in row}


def sigterm_after(trainer, step):
  """Makes `trainer` receive SIGTERM (in this process) right after training step `step`, as a
  preemption would; the trainer then stops after its next step."""

  def send(state, done):
    del state
    if done == step:
      os.kill(os.getpid(), signal.SIGTERM)

  trainer.add_hook(send, every=1, at_end=False)
  return trainer


def assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def final_state(workdir, trainer):
  """The state in the latest checkpoint of `workdir`, restored onto `trainer`'s shardings."""
  checkpointer = Checkpointer(workdir)
  try:
    state, _ = checkpointer.restore(trainer.abstract_state_with_shardings())
  finally:
    checkpointer.close()
  return state
