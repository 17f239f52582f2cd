"""Random-weight Hugging Face LLaMA checkpoints written without transformers or torch.

For tests that need a checkpoint of a given shape (init_from, bad inputs) and for measuring the
import's peak memory on a large one:

  python tests/interop/synthetic_checkpoint.py --out /tmp/llama_synth --hidden 2048 --layers 12 \
      --ffn 5632 --vocab 32000 --heads 16 --kv_heads 4 --dtype BF16 --shard_mb 500
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from jaxlab.interop import safetensors_io


def hf_config(
  *,
  vocab: int,
  hidden: int,
  layers: int,
  heads: int,
  kv_heads: int,
  ffn: int,
  tied: bool = False,
  max_positions: int = 256,
  **extra,
) -> dict:
  """A transformers 4.x-style LlamaForCausalLM config.json (top-level rope_theta)."""
  return {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": vocab,
    "hidden_size": hidden,
    "intermediate_size": ffn,
    "num_hidden_layers": layers,
    "num_attention_heads": heads,
    "num_key_value_heads": kv_heads,
    "max_position_embeddings": max_positions,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": tied,
    "hidden_act": "silu",
    "torch_dtype": "float32",
    **extra,
  }


def tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
  """Every weight of the config's LLaMA, in the order transformers lists them."""
  d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
  hd = d // config["num_attention_heads"]
  q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
  shapes = {"model.embed_tokens.weight": (v, d)}
  for i in range(config["num_hidden_layers"]):
    prefix = f"model.layers.{i}."
    shapes.update(
      {
        prefix + "self_attn.q_proj.weight": (q, d),
        prefix + "self_attn.k_proj.weight": (kv, d),
        prefix + "self_attn.v_proj.weight": (kv, d),
        prefix + "self_attn.o_proj.weight": (d, q),
        prefix + "mlp.gate_proj.weight": (f, d),
        prefix + "mlp.up_proj.weight": (f, d),
        prefix + "mlp.down_proj.weight": (d, f),
        prefix + "input_layernorm.weight": (d,),
        prefix + "post_attention_layernorm.weight": (d,),
      }
    )
  shapes["model.norm.weight"] = (d,)
  if not config["tie_word_embeddings"]:
    shapes["lm_head.weight"] = (v, d)
  return shapes


def write_checkpoint(
  directory: str,
  config: dict,
  *,
  dtype: str = "F32",
  shard_bytes: int | None = None,
  seed: int = 0,
  shapes: dict[str, tuple[int, ...]] | None = None,
) -> None:
  """Writes config.json and random weights (N(0, 0.05), norms near 1), one tensor at a time,
  into `directory`; sharded with an index when `shard_bytes` is given. `shapes` overrides the
  tensors written (to plant a bad checkpoint)."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  np_dtype = safetensors_io.DTYPES[dtype]
  specs = [
    safetensors_io.TensorSpec(name, np_dtype, shape)
    for name, shape in (shapes or tensor_shapes(config)).items()
  ]
  rng = np.random.default_rng(seed)

  def produce(spec):
    if len(spec.shape) == 1:
      return (1.0 + 0.1 * rng.standard_normal(spec.shape, np.float32)).astype(np_dtype)
    return (0.05 * rng.standard_normal(spec.shape, np.float32)).astype(np_dtype)

  groups, size = [[]], 0
  for spec in specs:
    if shard_bytes and groups[-1] and size + spec.nbytes > shard_bytes:
      groups, size = groups + [[]], 0
    groups[-1].append(spec)
    size += spec.nbytes
  if len(groups) == 1:
    safetensors_io.write_file(
      os.path.join(directory, safetensors_io.SINGLE_FILE), specs, produce, {"format": "pt"}
    )
    return
  weight_map = {}
  for i, group in enumerate(groups, start=1):
    name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
    safetensors_io.write_file(os.path.join(directory, name), group, produce, {"format": "pt"})
    weight_map.update({spec.name: name for spec in group})
  with open(os.path.join(directory, safetensors_io.INDEX_FILE), "w") as f:
    total = sum(s.nbytes for s in specs)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--vocab", type=int, default=32000)
  parser.add_argument("--hidden", type=int, default=2048)
  parser.add_argument("--layers", type=int, default=12)
  parser.add_argument("--heads", type=int, default=16)
  parser.add_argument("--kv_heads", type=int, default=4)
  parser.add_argument("--ffn", type=int, default=5632)
  parser.add_argument("--dtype", default="BF16", choices=sorted(safetensors_io.DTYPES))
  parser.add_argument("--shard_mb", type=int, default=0, help="0: one file")
  args = parser.parse_args()
  config = hf_config(
    vocab=args.vocab,
    hidden=args.hidden,
    layers=args.layers,
    heads=args.heads,
    kv_heads=args.kv_heads,
    ffn=args.ffn,
    max_positions=4096,
  )
  write_checkpoint(args.out, config, dtype=args.dtype, shard_bytes=args.shard_mb * 10**6 or None)


if __name__ == "__main__":
  main()
