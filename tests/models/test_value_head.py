"""The PPO critic: a Transformer backbone whose trained weights drop in, a bias-free value head with
logical axis names, float32 values aligned with the LM's positions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.models.value_head import ValueModel, critic_params

CFG = TransformerConfig(
  vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, scan_layers=False
)
TOKENS = jnp.asarray(np.random.RandomState(0).randint(3, 64, (2, 10)))


@pytest.fixture(scope="module")
def lm_variables():
  return jax.jit(Transformer(CFG).init)(jax.random.PRNGKey(1), TOKENS)


def test_the_head_is_a_named_bias_free_column_and_the_backbone_is_the_lm(lm_variables):
  variables = jax.jit(ValueModel(CFG).init)(jax.random.PRNGKey(0), TOKENS)
  specs = nn.get_partition_spec(variables)["params"]
  assert specs["value_head"] == {"kernel": jax.sharding.PartitionSpec("embed", None)}
  assert specs["backbone"] == nn.get_partition_spec(lm_variables)["params"]
  params = nn.unbox(variables)["params"]
  assert params["value_head"]["kernel"].shape == (CFG.d_model, 1)
  # Trained LM parameters drop in: critic_params has the init's structure and shapes.
  lm = nn.unbox(lm_variables)["params"]
  built = critic_params(lm, CFG)
  assert jax.tree.structure(built) == jax.tree.structure(params)
  assert jax.tree.map(jnp.shape, built) == jax.tree.map(jnp.shape, params)


def test_values_are_the_head_applied_to_the_final_hidden_states(lm_variables):
  lm = nn.unbox(lm_variables)["params"]
  params = critic_params(lm, CFG)
  values = ValueModel(CFG).apply({"params": params}, TOKENS)
  assert values.shape == TOKENS.shape and values.dtype == jnp.float32
  assert float(jnp.abs(values).max()) == 0.0  # a fresh head values every state at 0
  kernel = jax.random.normal(jax.random.PRNGKey(2), (CFG.d_model, 1))
  params["value_head"]["kernel"] = kernel
  values = ValueModel(CFG).apply({"params": params}, TOKENS)
  hidden, _ = Transformer(CFG).apply({"params": lm}, TOKENS, return_hidden=True)
  np.testing.assert_allclose(np.asarray(values), np.asarray(hidden @ kernel)[..., 0], rtol=1e-5)
  # Causal: a later token never changes an earlier value.
  changed = TOKENS.at[:, 7].set(5)
  later = ValueModel(CFG).apply({"params": params}, changed)
  np.testing.assert_allclose(np.asarray(later[:, :7]), np.asarray(values[:, :7]), rtol=1e-5)
  assert not np.allclose(np.asarray(later[:, 7:]), np.asarray(values[:, 7:]))
