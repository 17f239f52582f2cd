"""Train state and its shardings: created already sharded, never materialized on one device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any
# rng -> {"params": ..., other collections (e.g. "batch_stats"): ...}, possibly logically boxed
InitVariables = Callable[[jax.Array], dict[str, PyTree]]
# initial params -> frozen state (e.g. a reference model); {} when an objective needs none
InitFrozen = Callable[[PyTree], PyTree]


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a plain pytree (checkpointed as is).

  `model_state` holds the model's mutable collections (BatchNorm statistics), `frozen` what the
  objective reads but never trains (a reference model's parameters).
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array
  model_state: PyTree
  frozen: PyTree


def no_frozen_state(params: PyTree) -> PyTree:
  del params
  return {}


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def variable_shardings(
  init_variables: InitVariables, mesh: jax.sharding.Mesh, rules: Sequence[tuple[str, Any]]
) -> tuple[PyTree, PyTree]:
  """Abstract (unboxed) variables and their NamedShardings from the logical axis names
  (arrays without names are replicated)."""
  boxed = jax.eval_shape(init_variables, jax.random.PRNGKey(0))
  logical = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
  return nn.unbox(boxed), shardings


def check_divisible(abstract: PyTree, shardings: PyTree) -> None:
  """Raises ValueError naming the first array whose sharded dimension the mesh does not divide."""
  for (path, leaf), sharding in zip(
    jax.tree_util.tree_leaves_with_path(abstract), jax.tree.leaves(shardings)
  ):
    mesh_sizes = dict(zip(sharding.mesh.axis_names, sharding.mesh.devices.shape))
    for dim, axes in zip(leaf.shape, sharding.spec):
      axes = (axes,) if isinstance(axes, str) else (axes or ())
      ways = 1
      for axis in axes:
        ways *= mesh_sizes[axis]
      if dim % ways:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        raise ValueError(
          f"parameter {name} {tuple(leaf.shape)}: dimension {dim} is not divisible "
          f"by mesh axes {axes} of size {ways}"
        )


def _split(variables: dict[str, PyTree]) -> tuple[PyTree, PyTree]:
  return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def state_shardings(
  init_variables: InitVariables,
  init_frozen: InitFrozen,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules: Sequence[tuple[str, Any]],
) -> tuple[TrainState, TrainState]:
  """Abstract TrainState and matching shardings; optimizer moments follow their parameters,
  optimizer scalars (e.g. `count`) are replicated, frozen state follows the parameters it
  derives from where the shapes allow and is replicated otherwise."""
  abstract_vars, var_shardings = variable_shardings(init_variables, mesh, rules)
  for collection in abstract_vars:
    check_divisible(abstract_vars[collection], var_shardings[collection])
  abstract_params, params_sharding = _split(abstract_vars)[0], _split(var_shardings)[0]
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  # Masked-out parameters (optax.multi_transform) keep their empty MaskedNode.
  opt_sharding = optax.tree_map_params(
    tx,
    lambda leaf, sharding: leaf if isinstance(leaf, optax.MaskedNode) else sharding,
    abstract_opt,
    params_sharding,
    transform_non_params=lambda _: replicated(mesh),
    is_leaf=lambda x: isinstance(x, (jax.sharding.Sharding, optax.MaskedNode)),
  )
  abstract_frozen = jax.eval_shape(init_frozen, abstract_params)
  frozen_sharding = _frozen_shardings(abstract_frozen, abstract_params, params_sharding, mesh)
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  abstract = TrainState(
    step=scalar,
    params=abstract_params,
    opt_state=abstract_opt,
    rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
    model_state=_split(abstract_vars)[1],
    frozen=abstract_frozen,
  )
  shardings = TrainState(
    step=replicated(mesh),
    params=params_sharding,
    opt_state=opt_sharding,
    rng=replicated(mesh),
    model_state=_split(var_shardings)[1],
    frozen=frozen_sharding,
  )
  return abstract, shardings


def _frozen_shardings(
  abstract_frozen: PyTree, abstract_params: PyTree, params_sharding: PyTree, mesh: jax.sharding.Mesh
) -> PyTree:
  """Every subtree of the frozen state shaped like the parameters (a reference model, or a dict
  of several) is sharded like them; anything else is replicated."""
  if jax.tree.structure(abstract_frozen) == jax.tree.structure(abstract_params):
    return params_sharding
  if isinstance(abstract_params, dict):  # a copy of one entry (PPO's reference: params["actor"])
    for key, entry in abstract_params.items():
      if _same_shapes(abstract_frozen, entry):
        return params_sharding[key]
  if isinstance(abstract_frozen, dict):
    return {
      key: _frozen_shardings(value, abstract_params, params_sharding, mesh)
      for key, value in abstract_frozen.items()
    }
  return jax.tree.map(lambda _: replicated(mesh), abstract_frozen)


def _same_shapes(a: PyTree, b: PyTree) -> bool:
  """Whether two pytrees have the same structure and leaf shapes."""
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@flax.struct.dataclass
class StartingWeights:
  """Trained weights a run starts from instead of a fresh init: the parameters and, optionally,
  the frozen state (e.g. reference models); arrays, placed onto the state's shardings."""

  params: PyTree
  frozen: PyTree = None


def with_shardings(abstract: PyTree, shardings: PyTree) -> PyTree:
  """ShapeDtypeStructs that carry their sharding (what lower() and orbax restore want)."""
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )


def create_state(
  init_variables: InitVariables,
  init_frozen: InitFrozen,
  tx: optax.GradientTransformation,
  seed: int,
  shardings: TrainState,
  start: StartingWeights | None = None,
) -> TrainState:
  """Initializes the variables, frozen and optimizer state directly into their shardings; with
  `start`, its parameters (and frozen state, when given) replace the fresh ones. They enter the
  jitted init as arguments, never as constants baked into the program."""
  if start is not None:
    start = StartingWeights(
      params=jax.device_put(start.params, shardings.params),
      frozen=None if start.frozen is None else jax.device_put(start.frozen, shardings.frozen),
    )

  def init(rng, start):
    params_rng, state_rng = jax.random.split(rng)
    params, model_state = _split(nn.unbox(init_variables(params_rng)))
    if start is not None:
      params = start.params
    frozen = init_frozen(params) if start is None or start.frozen is None else start.frozen
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=state_rng,
      model_state=model_state,
      frozen=frozen,
    )

  return jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(seed), start)
