"""The SMI scaling study end to end on a synthetic knowledge corpus (docs/smi.md section 7).

generate corpus -> count -> pretrain 3 model sizes -> CBQA per size -> fit per size ->
summary.json, a combined figure and report.md in the workdir.

  python -m jaxlab.launch --config configs/smi_scaling.py --workdir runs/smi  # < 20 min, 2 cores
  python -m jaxlab.launch --config configs/smi_scaling.py:smoke --workdir runs/s # ~3 min (CI)
"""

import ml_collections

from jaxlab import presets
from jaxlab.config import parse_arg

SIZES = {
  "xs": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=172),
  "s": dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=344),
  "m": dict(d_model=192, n_layers=3, n_heads=6, n_kv_heads=3, d_ff=512),
}
# Smaller shapes for the CI smoke run: the pipeline, not the science.
SMOKE_SIZES = {
  "xs": dict(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=86),
  "s": dict(d_model=48, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=128),
  "m": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=172),
}


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0)
  config = ml_collections.ConfigDict()
  config.experiment = "smi_scaling"
  config.seed = 0
  config.corpus = ml_collections.ConfigDict(
    dict(
      num_facts=120,
      num_relations=12,
      num_docs=4000,
      log2_fact_docs=(0.0, 6.0),
      log2_noise_docs=(-1.0, 6.0),
      eval_docs=200,
      seed=0,
    )
  )
  config.count_workers = 2
  config.sizes = ml_collections.ConfigDict(SMOKE_SIZES if args.smoke else SIZES)
  config.base = presets.lm_config(vocab_size=259, max_seq_len=256, tie_embeddings=True)
  # ~4 epochs of the corpus: tiny models start recalling facts only after several passes.
  config.base.train.update(
    steps=args.steps or 700, global_batch=16, seq_len=128, log_every=25, eval_every=0
  )
  config.base.optimizer.update(lr=3e-3, warmup_steps=50, weight_decay=0.01)
  config.base.checkpoint.update(every=250, keep=1)
  config.cbqa = ml_collections.ConfigDict(
    dict(
      templates_per_relation=3,
      samples=10,
      temperature=0.7,
      top_p=1.0,
      max_new_tokens=10,
      batch_size=480,
    )
  )
  config.fit_variant = "latest"
  if args.smoke:
    config.corpus.update(num_facts=48, num_docs=800, eval_docs=50)
    config.base.train.update(steps=args.steps or 120)
    config.cbqa.update(templates_per_relation=2, samples=2)
  return config
