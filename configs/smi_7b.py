"""SMI study model: LLaMA-2-style 7b (shapes in jaxlab.presets.SMI_SHAPES).

Point data.train_files at JSONL shards and data.tokenizer.path at a SentencePiece model, e.g.
  python -m jaxlab.launch --config configs/smi_7b.py --workdir /runs/smi_7b \
    --config.data.train_files='/data/*.jsonl' --config.data.tokenizer.path=/data/sp.model
Check that it fits a slice without one: --dry_run --config.topology=v5p-128.
"""

from jaxlab import presets


def get_config(arg=None):
  del arg
  return presets.smi_llama_config("7b", global_batch=512)
