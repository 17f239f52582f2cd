"""A tiny model and encoded preference pairs shared by the DPO and SCIR objective tests."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlab.data.preferences import PairEncoder
from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.models.transformer import Transformer, TransformerConfig

TEMPLATE = "judge {prompt} A:{response_a} B:{response_b} ->"
PAIRS = [
  ("c>", "abcc", "abab"),
  ("a>", "aaab", "bbbb"),
  ("b>", "bbba", "abba"),
  ("d>", "dd", "ddd"),
]


def tiny_model(loss_impl: str = "xla") -> Transformer:
  cfg = TransformerConfig(
    vocab_size=259, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64, max_seq_len=64
  )
  return Transformer(dataclasses.replace(cfg, loss_impl=loss_impl))


def init_params(model: Transformer, seed: int = 0):
  return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8), jnp.int32))["params"]


def perturbed(params, seed: int, scale: float = 0.05):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
    tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  )


def pair_batch():
  arrays, kept = PairEncoder(ByteTokenizer(), 16, 40, TEMPLATE).encode(PAIRS)
  assert list(kept) == list(range(len(PAIRS)))
  return {k: jnp.asarray(v) for k, v in arrays.items()}
