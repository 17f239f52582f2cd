"""The peer most users would otherwise pick: Hugging Face transformers' LlamaForCausalLM on PyTorch.

torch and transformers live in the `bench` extra and are imported only here.
"""

from __future__ import annotations

import numpy as np

from jaxlab.bench.presets import BenchPreset
from jaxlab.bench.timing import Runner


def _require():
  try:
    import torch
    import transformers
  except ImportError as e:
    raise RuntimeError(
      f"the peer needs the bench extra ({e.name} missing): pip install -e '.[bench]'"
    ) from None
  return torch, transformers


def build_model(preset: BenchPreset, seed: int = 0):
  torch, transformers = _require()
  torch.manual_seed(seed)
  config = transformers.LlamaConfig(
    vocab_size=preset.vocab_size,
    hidden_size=preset.d_model,
    intermediate_size=preset.d_ff,
    num_hidden_layers=preset.n_layers,
    num_attention_heads=preset.n_heads,
    num_key_value_heads=preset.n_kv_heads,
    max_position_embeddings=max(preset.seq_len, 512),
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    attn_implementation="sdpa",
  )
  return transformers.LlamaForCausalLM(config).float()


def train_runner(preset: BenchPreset, tokens: np.ndarray) -> Runner:
  """Eager training step: forward, loss, backward, global-norm clipping, AdamW."""
  torch, _ = _require()
  model = build_model(preset).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
  inputs = torch.from_numpy(tokens[:, :-1].astype(np.int64))
  targets = torch.from_numpy(tokens[:, 1:].astype(np.int64))

  def once():
    optimizer.zero_grad(set_to_none=True)
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(
      logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

  return once


def generate_runner(
  preset: BenchPreset, prompts: np.ndarray, new_tokens: int, model=None, device: str = "cpu"
) -> Runner:
  """Greedy `generate` with the KV cache, forced to produce exactly `new_tokens` per row; on
  `model` (already on `device`) when given, else a fresh CPU model of `preset`'s shapes. On
  CUDA each call ends with a device sync, so the time covers the work."""
  torch, _ = _require()
  if model is None:
    model = build_model(preset).eval()
  input_ids = torch.from_numpy(prompts.astype(np.int64)).to(device)

  def once():
    with torch.inference_mode():
      model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
      )
    if device == "cuda":
      torch.cuda.synchronize()

  return once
