"""`python -m jaxlab.bench sample`: decode throughput of jaxlab's sampler vs transformers'
generate."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.bench.presets import BenchPreset
from jaxlab.bench.timing import Runner
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.sampling import sample

PROMPT_LEN, NEW_TOKENS = 32, 128


def prompts(preset: BenchPreset, seed: int = 0) -> np.ndarray:
  return (
    np.random.RandomState(seed)
    .randint(3, preset.vocab_size, (preset.batch, PROMPT_LEN))
    .astype(np.int32)
  )


def jaxlab_decode_runner(preset: BenchPreset, prompt_tokens: np.ndarray) -> Runner:
  """Greedy decoding of NEW_TOKENS per row (no EOS, so every row decodes the full length).
  Layers are not scanned: a scanned decode step would copy every layer's weights out of the
  stacked arrays at every token."""
  cfg = TransformerConfig(
    vocab_size=preset.vocab_size,
    d_model=preset.d_model,
    n_layers=preset.n_layers,
    n_heads=preset.n_heads,
    n_kv_heads=preset.n_kv_heads,
    d_ff=preset.d_ff,
    max_seq_len=PROMPT_LEN + NEW_TOKENS,
    scan_layers=False,
  )
  params = nn.unbox(Transformer(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32)))[
    "params"
  ]
  tokens = jnp.asarray(prompt_tokens)
  mask = jnp.ones_like(tokens)

  def once():
    out = sample(
      params, cfg, tokens, mask, jax.random.PRNGKey(1), max_new_tokens=NEW_TOKENS, temperature=0.0
    )
    jax.block_until_ready(out.tokens)

  return once
