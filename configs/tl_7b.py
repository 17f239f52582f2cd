"""TL-Training at the paper's scale: a CodeLLaMA-7B-shaped model (full fine-tuning) on a TPU pod.

Start from a jaxlab LM run holding the base model (e.g. imported weights) and the tool-use data:
  python -m jaxlab.launch --config configs/tl_7b.py --workdir /runs/tl_7b \
    --config.start.run=/runs/codellama_7b --config.task.train_file=/data/tl_train.jsonl \
    --config.task.test_files='("clean=/data/rotbench_clean.json", "heavy=/data/heavy.json")'
Check that the SFT step and the PPO step (actor + critic trained, reference frozen) fit a slice
without one: --dry_run --config.topology=v5p-128.
"""

from jaxlab.experiments.tl_settings import tl_config


def get_config(arg=None):
  del arg
  config = tl_config(
    vocab_size=32_064,  # CodeLLaMA's 32,016 tokens padded to a multiple of 64
    d_model=4096,
    n_layers=32,
    n_heads=32,
    n_kv_heads=32,
    d_ff=11_008,
    max_seq_len=8192,
    dtype="bfloat16",
    remat_policy="full",
    attention_query_block=512,
  )
  config.seeds = (0,)
  config.task.update(kind="files")
  config.mesh.update(data=1, fsdp=-1)
  # TL-Training's SFT: lr 1e-6, one epoch of 1,217 trajectories, AdamW (0.9, 0.95), wd 0.01.
  config.sft.update(steps=300, batch_size=64, seq_len=4096, lr=1e-6, warmup_steps=3, log_every=10)
  # Its PPO: greedy rollouts of up to 512 tokens, actor lr 2e-7, critic lr 1e-7, 100 warm-up steps.
  config.rl.update(
    steps=500,
    batch_size=64,
    seq_len=2048,
    max_new_tokens=512,
    actor_lr=2e-7,
    critic_lr=1e-7,
    warmup_steps=100,
    log_every=10,
  )
  config.eval.update(max_new_tokens=256, batch_size=64)
  config.checkpoint.update(every=100)
  return config
