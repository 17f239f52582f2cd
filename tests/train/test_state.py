"""Train states that start from trained weights, and frozen reference models sharded like the
parameters they copy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.experiments.lm_pretrain import lm_init_variables
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.parallel.mesh import build_mesh, default_logical_rules, mesh_context
from jaxlab.train.state import StartingWeights, create_state, state_shardings

CFG = TransformerConfig(
  vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=16
)
RULES = default_logical_rules()


def _setup(frozen_keys):
  mesh = build_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=4, tensor=1)))
  init = lm_init_variables(Transformer(CFG), 8)
  init_frozen = lambda params: {key: params for key in frozen_keys}  # noqa: E731
  tx = optax.adam(1e-3)
  abstract, shardings = state_shardings(init, init_frozen, tx, mesh, RULES)
  return mesh, init, init_frozen, tx, abstract, shardings


def test_several_frozen_models_are_sharded_like_the_parameters():
  _, _, _, _, _, shardings = _setup(("reference", "label_reference"))
  for key in ("reference", "label_reference"):
    assert jax.tree.leaves(shardings.frozen[key]) == jax.tree.leaves(shardings.params)
  assert any(s.spec != jax.sharding.PartitionSpec() for s in jax.tree.leaves(shardings.params))


def test_starting_weights_replace_the_fresh_init():
  mesh, init, init_frozen, tx, _, shardings = _setup(("reference", "label_reference"))
  with mesh_context(mesh, RULES):
    fresh = create_state(init, init_frozen, tx, 0, shardings)
    trained = jax.tree.map(lambda x: x + 1.0, fresh.params)
    other = jax.tree.map(lambda x: x - 1.0, fresh.params)
    start = StartingWeights(trained, {"reference": trained, "label_reference": other})
    state = create_state(init, init_frozen, tx, 0, shardings, start)
    default_frozen = create_state(init, init_frozen, tx, 0, shardings, StartingWeights(trained))
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(got, want)
    assert got.sharding == want.sharding
  for got, want in zip(jax.tree.leaves(state.frozen["label_reference"]), jax.tree.leaves(other)):
    np.testing.assert_array_equal(got, want)
  # Without a frozen state of its own, it derives from the starting parameters.
  for got, want in zip(
    jax.tree.leaves(default_frozen.frozen["label_reference"]), jax.tree.leaves(trained)
  ):
    np.testing.assert_array_equal(got, want)
  assert (
    int(state.step) == 0 and float(jnp.abs(state.opt_state[0].mu["final_norm"]["scale"]).max()) == 0
  )
