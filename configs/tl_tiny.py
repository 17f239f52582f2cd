"""TL-Training study on one CPU: the synthetic tool-use task, standard SFT vs SFT+MAE vs
SFT+MAE+PKT vs TL (MAE+PKT, then PPO with the error-category reward), 3 seeds.

An LM of 135k parameters on the task's word tokenizer (canonical and drawn names are whole word
tokens, misspelled ones bytes) learns from 3,000 generated trajectories (a quarter adverse: a
wrong call, its error, then the right call; a quarter with misspelled names; 3 tools declared
per item) in 1,000 SFT steps of 16 rows; TL adds 60 PPO steps of 32 greedy rollouts, two updates
per rollout batch. Every model is scored on 128 test items at each level (clean, renamed,
misspelled, swapped). 45 minutes measured on the 2-core CPU machine (results: README).
Args (`configs/tl_tiny.py:smoke`): `smoke` shrinks everything for CI (one seed, a few steps).
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.tl_settings import tl_config


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  config = tl_config(
    vocab_size=576,  # the word tokenizer's 563, padded
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=192,
    max_seq_len=320,
    tie_embeddings=True,
    scan_layers=False,
  )
  config.task.update(train_trajectories=3000, test_items=128, tools_per_item=3)
  config.sft.update(steps=1000, batch_size=16, seq_len=240, lr=1e-2, warmup_steps=20, log_every=50)
  config.rl.update(
    steps=60,
    batch_size=32,
    seq_len=256,
    max_new_tokens=64,
    actor_lr=3e-4,
    critic_lr=1e-3,
    warmup_steps=5,
    log_every=5,
  )
  config.ppo.updates_per_batch = 2
  config.eval.update(max_new_tokens=64, batch_size=64)
  config.checkpoint.update(every=200, keep=1)
  if args.smoke:
    config.seeds = (0,)
    config.model.update(d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, max_seq_len=256)
    config.model.attention_query_block = 0
    config.task.update(
      train_trajectories=48, test_items=8, levels=("clean", "swapped"), tools_per_item=2
    )
    config.sft.update(steps=3, batch_size=8, seq_len=224, log_every=1)
    config.rl.update(steps=2, batch_size=8, seq_len=224, max_new_tokens=16, log_every=1)
    config.eval.update(max_new_tokens=16, batch_size=8)
  return config
