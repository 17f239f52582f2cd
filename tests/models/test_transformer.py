import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.config import ConfigError
from jaxlab.models.transformer import Transformer, TransformerConfig, count_params, init_cache

CFG = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48)


def _init(cfg=CFG, length=12):
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (2, length)))
  variables = Transformer(cfg).init(jax.random.PRNGKey(0), tokens)
  return tokens, variables


def test_every_parameter_has_logical_axis_names_and_layers_are_stacked():
  _, variables = _init()
  specs = nn.get_partition_spec(variables)["params"]
  for path, spec in jax.tree_util.tree_leaves_with_path(
    specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  ):
    assert all(isinstance(name, str) for name in spec), path
  assert specs["layers"]["attention"]["wq"] == jax.sharding.PartitionSpec(
    "layers", "embed", "heads", "head_dim"
  )
  params = nn.unbox(variables)["params"]
  assert params["layers"]["attention"]["wk"].shape == (2, 32, 2, 8)  # grouped-query: 2 kv heads
  assert params["layers"]["mlp"]["w_gate"].shape == (2, 32, 48)


def test_parameter_count_formula():
  _, variables = _init()
  cfg = CFG
  per_layer = (
    cfg.d_model * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    + 3 * cfg.d_model * cfg.d_ff
    + 2 * cfg.d_model
  )
  expected = cfg.n_layers * per_layer + 2 * cfg.vocab_size * cfg.d_model + cfg.d_model
  assert count_params(nn.unbox(variables)) == expected


def test_tied_embeddings_drop_the_head():
  tied = TransformerConfig(**{**CFG.__dict__, "tie_embeddings": True})
  _, variables = _init(tied)
  assert "lm_head" not in variables["params"]


def test_kv_cache_decode_matches_full_forward():
  tokens, variables = _init()
  model, params = Transformer(CFG), nn.unbox(variables)
  full, _ = model.apply(params, tokens)
  cache = init_cache(CFG, batch=2, max_length=16)
  logits, cache = model.apply(params, tokens[:, :5], cache=cache)
  pieces = [logits]
  for t in range(5, tokens.shape[1]):
    logits, cache = model.apply(params, tokens[:, t : t + 1], cache=cache)
    pieces.append(logits)
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=2e-5)
  assert int(cache["index"]) == tokens.shape[1]


def test_shifting_every_position_leaves_the_logits_unchanged():
  """RoPE on both queries and keys makes attention see only position offsets: the same tokens at
  positions 0..11 and 37..48 give the same logits; a different order of positions does not."""
  tokens, variables = _init()
  forward = jax.jit(lambda positions: Transformer(CFG).apply(params, tokens, None, positions)[0])
  params = nn.unbox(variables)
  positions = jnp.broadcast_to(jnp.arange(12), (2, 12))
  base = forward(positions)
  np.testing.assert_allclose(forward(positions + 37), base, atol=1e-4)
  spread = forward(3 * positions)
  assert np.abs(np.asarray(spread - base)).max() > 1e-3


def test_packed_documents_do_not_see_each_other():
  tokens, variables = _init()
  model, params = Transformer(CFG), nn.unbox(variables)
  segments = jnp.asarray([[1] * 5 + [2] * 7] * 2)
  positions = jnp.asarray([list(range(5)) + list(range(7))] * 2)
  packed, _ = model.apply(params, tokens, segments, positions)
  first, _ = model.apply(params, tokens[:, :5])
  second, _ = model.apply(params, tokens[:, 5:])
  np.testing.assert_allclose(packed[:, :5], first, atol=2e-5)
  np.testing.assert_allclose(packed[:, 5:], second, atol=2e-5)


@pytest.mark.parametrize(
  "changes",
  [
    dict(attention_query_block=5),
    dict(scan_layers=False),
    dict(attention_query_block=4, scan_layers=False),
  ],
)
def test_query_blocks_and_unrolled_layers_compute_the_same_model(changes):
  """Blocked attention (12 tokens in blocks of 5 or 4: ragged and even) over packed documents
  and unrolled layers give the dense model's logits and gradients."""
  tokens, variables = _init()
  params = nn.unbox(variables)
  changed = TransformerConfig(**{**CFG.__dict__, **changes})
  changed_params = params if changed.scan_layers else _unstack_layers(params)
  segments = jnp.asarray([[1] * 5 + [2] * 7, [1] * 9 + [0] * 3])
  positions = jnp.asarray([list(range(5)) + list(range(7)), list(range(9)) + [0] * 3])

  def loss(cfg, p):
    logits = Transformer(cfg).apply(p, tokens, segments, positions)[0]
    return jnp.mean(logits**2), logits

  dense = TransformerConfig(**{**CFG.__dict__, "attention_query_block": 0})
  (_, base), base_grads = jax.value_and_grad(lambda p: loss(dense, p), has_aux=True)(params)
  (_, out), grads = jax.value_and_grad(lambda p: loss(changed, p), has_aux=True)(changed_params)
  np.testing.assert_allclose(out, base, atol=2e-5)
  expected = base_grads if changed.scan_layers else _unstack_layers(base_grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, expected)


def _unstack_layers(variables):
  """Scanned parameters ({"layers": stacked}) as separately named layers_0, layers_1, ..."""
  params = dict(variables["params"])
  stacked = params.pop("layers")
  for i in range(CFG.n_layers):
    params[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return {"params": params}


def test_unscanned_layers_decode_with_the_kv_cache():
  unscanned = TransformerConfig(**{**CFG.__dict__, "scan_layers": False})
  tokens, variables = _init(unscanned)
  model, params = Transformer(unscanned), nn.unbox(variables)
  assert "layers_1" in params["params"]
  full, _ = model.apply(params, tokens)
  logits, cache = model.apply(params, tokens[:, :7], cache=init_cache(unscanned, 2, 16))
  step, _ = model.apply(params, tokens[:, 7:8], cache=cache)
  np.testing.assert_allclose(jnp.concatenate([logits, step], axis=1), full[:, :8], atol=2e-5)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_policies_do_not_change_gradients(policy):
  tokens, variables = _init()
  params = nn.unbox(variables)
  remat = TransformerConfig(**{**CFG.__dict__, "remat_policy": policy})

  def loss(cfg, p):
    return jnp.mean(Transformer(cfg).apply(p, tokens)[0] ** 2)

  base, again = jax.grad(lambda p: loss(CFG, p))(params), jax.grad(lambda p: loss(remat, p))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), base, again)


def test_bfloat16_compute_keeps_float32_parameters():
  bf16 = TransformerConfig(**{**CFG.__dict__, "dtype": "bfloat16"})
  tokens, variables = _init(bf16)
  logits, _ = Transformer(bf16).apply(nn.unbox(variables), tokens)
  assert logits.dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(variables)))
  full, _ = Transformer(CFG).apply(nn.unbox(variables), tokens)
  error = np.abs(np.asarray(logits, np.float32) - np.asarray(full)).max()
  # Measured 0.0033 on logits of std 0.11; bf16 matmuls must leave some error, and not much.
  assert 0 < error < 0.01


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("n_heads", 3, "not divisible by n_heads"),
    ("n_kv_heads", 3, "not divisible by n_kv_heads"),
    ("remat_policy", "bogus", "unknown model.remat_policy"),
    ("dtype", "int8", "unknown model.dtype"),
    ("attention_impl", "nope", "unknown attention_impl"),
    ("attention_query_block", -1, "must be >= 0"),
  ],
)
def test_validate_rejects_bad_settings(field, value, message):
  with pytest.raises(ValueError, match=message):
    TransformerConfig(**{**CFG.__dict__, field: value}).validate()


def test_from_config_reads_the_model_section_and_rejects_unknown_keys():
  section = ml_collections.ConfigDict(
    dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48)
  )
  assert TransformerConfig.from_config(section) == CFG
  section.attention_query_blok = 8
  with pytest.raises(
    ConfigError,
    match=r"unknown config key 'model\.attention_query_blok' "
    r"\(did you mean 'model\.attention_query_block'\?\)",
  ):
    TransformerConfig.from_config(section)
