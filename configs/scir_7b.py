"""SCIR at the published scale: a Mistral-7B-shaped policy, its frozen reference and the
previous round's model as the implicit reward's reference, on a TPU pod.

Start from a jaxlab LM run (e.g. imported weights after SFT) and a prompt file:
  python -m jaxlab.launch --config configs/scir_7b.py --workdir /runs/scir_7b \
    --config.start.run=/runs/sft --config.start.label_reference_run=/runs/base \
    --config.task.prompts_file=/data/prompts.jsonl --config.judge.template_file=/data/judge.txt
Check that the SCIR step fits a slice without one: --dry_run --config.topology=v5p-128.
"""

from jaxlab import presets


def get_config(arg=None):
  del arg
  config = presets.scir_config(
    vocab_size=32_000,
    d_model=4096,
    n_layers=32,
    n_heads=32,
    n_kv_heads=8,
    d_ff=14_336,
    max_seq_len=4096,
    dtype="bfloat16",
    remat_policy="full",
    attention_query_block=512,
  )
  config.seeds = (0,)
  config.methods = ("scir",)
  config.task.update(kind="prompts_file")
  config.mesh.update(data=1, fsdp=-1)
  config.rounds.update(
    iterations=3,
    samples_per_prompt=4,
    max_new_tokens=512,
    sample_batch=64,
    steps=500,
    batch_size=64,
    lr=5e-7,
    seq_len=1024,
    judge_len=2048,
  )
  config.optimizer.update(warmup_steps=50, weight_decay=0.0)
  config.checkpoint.update(every=100)
  return config
