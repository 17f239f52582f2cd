"""Train state and its shardings: created already sharded, never materialized on one device."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a plain pytree (checkpointed as is)."""
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def param_shardings(init_params: Callable[[jax.Array], PyTree], mesh: jax.sharding.Mesh,
                    rules: Sequence[tuple[str, Any]]) -> tuple[PyTree, PyTree]:
  """Abstract (unboxed) parameters and their NamedShardings from the logical axis names."""
  boxed = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  logical = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
  return nn.unbox(boxed), shardings


def check_divisible(abstract: PyTree, shardings: PyTree) -> None:
  """Raises ValueError naming the first array whose sharded dimension the mesh does not divide."""
  for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(abstract),
                                    jax.tree.leaves(shardings)):
    mesh_sizes = dict(zip(sharding.mesh.axis_names, sharding.mesh.devices.shape))
    for dim, axes in zip(leaf.shape, sharding.spec):
      axes = (axes,) if isinstance(axes, str) else (axes or ())
      ways = 1
      for axis in axes:
        ways *= mesh_sizes[axis]
      if dim % ways:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        raise ValueError(f"parameter {name} {tuple(leaf.shape)}: dimension {dim} is not divisible "
                         f"by mesh axes {axes} of size {ways}")


def state_shardings(abstract_params: PyTree, params_sharding: PyTree,
                    tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> tuple[TrainState, TrainState]:
  """Abstract TrainState and matching shardings; optimizer moments follow their parameters and
  optimizer scalars (e.g. `count`) are replicated."""
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_sharding = optax.tree_map_params(
      tx, lambda _, sharding: sharding, abstract_opt, params_sharding,
      transform_non_params=lambda _: replicated(mesh),
      is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                        opt_state=abstract_opt, rng=jax.ShapeDtypeStruct((2,), jnp.uint32))
  shardings = TrainState(step=replicated(mesh), params=params_sharding, opt_state=opt_sharding,
                         rng=replicated(mesh))
  return abstract, shardings


def with_shardings(abstract: PyTree, shardings: PyTree) -> PyTree:
  """ShapeDtypeStructs that carry their sharding (what lower() and orbax restore want)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


def create_state(init_params: Callable[[jax.Array], PyTree], tx: optax.GradientTransformation,
                 seed: int, shardings: TrainState) -> TrainState:
  """Initializes parameters and optimizer state directly into their shardings under jit."""

  def init(rng):
    params_rng, state_rng = jax.random.split(rng)
    params = nn.unbox(init_params(params_rng))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=state_rng)

  return jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(seed))
