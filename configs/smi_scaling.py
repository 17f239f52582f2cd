"""The SMI scaling study end to end on a synthetic knowledge corpus (specs/smi.md section 7).

generate corpus -> count -> pretrain 3 model sizes -> CBQA per size -> fit per size ->
summary.json, a combined figure and report.md in the workdir.

  python -m jaxlab.launch --config configs/smi_scaling.py --workdir runs/smi      # ~20 min, 2 CPU cores
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


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0)
  config = ml_collections.ConfigDict()
  config.experiment = "smi_scaling"
  config.seed = 0
  config.corpus = ml_collections.ConfigDict(dict(
      num_facts=240, num_relations=12, num_docs=12_000, log2_fact_docs=(0.0, 6.0),
      log2_noise_docs=(-1.0, 6.0), eval_docs=400, seed=0))
  config.count_workers = 2
  config.sizes = ml_collections.ConfigDict(SIZES)
  config.base = presets.lm_config(vocab_size=259, max_seq_len=256, tie_embeddings=True)
  config.base.train.update(steps=args.steps or 600, global_batch=16, seq_len=128, log_every=25,
                           eval_every=0)
  config.base.optimizer.update(lr=3e-3, warmup_steps=50, weight_decay=0.01)
  config.base.checkpoint.update(every=200, keep=1)
  config.cbqa = ml_collections.ConfigDict(dict(
      templates_per_relation=3, samples=10, temperature=0.7, top_p=1.0, max_new_tokens=10,
      batch_size=480))
  config.fit_variant = "latest"
  if args.smoke:
    config.corpus.update(num_facts=96, num_docs=3000, eval_docs=100)
    config.base.train.update(steps=args.steps or 120)
    config.cbqa.update(samples=4)
  return config
