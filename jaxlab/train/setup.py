"""Everything a run compiles before step 1: model, optimizer, mesh, shardings and jitted steps."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.parallel.mesh import build_mesh
from jaxlab.train import state as state_lib
from jaxlab.train.optimizer import build_optimizer
from jaxlab.train.step import BATCH_AXES, make_eval_step, make_train_step

BATCH_KEYS = {"inputs": jnp.int32, "targets": jnp.int32, "segment_ids": jnp.int32,
              "positions": jnp.int32, "loss_weights": jnp.float32}


@dataclasses.dataclass
class TrainSetup:
  """The compiled-to-be pieces of an LM run, all consistent with one mesh."""
  config: ml_collections.ConfigDict
  model_cfg: TransformerConfig
  model: Transformer
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  mesh: jax.sharding.Mesh
  rules: tuple
  abstract_state: state_lib.TrainState
  state_sharding: state_lib.TrainState
  batch_sharding: jax.sharding.NamedSharding
  init_params: Callable[[jax.Array], Any]

  def context(self):
    """Mesh + logical rules: needed while tracing anything that uses logical constraints."""
    return _Context(self.mesh, self.rules)

  def batch_abstract(self, global_batch: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((global_batch, seq_len), dtype, sharding=self.batch_sharding)
            for k, dtype in BATCH_KEYS.items()}

  def create_state(self) -> state_lib.TrainState:
    with self.context():
      return state_lib.create_state(self.init_params, self.tx, int(self.config.seed),
                                    self.state_sharding)

  def jit_train_step(self):
    step = make_train_step(self.model, self.tx, self.schedule, int(self.config.train.microbatches))
    replicated = state_lib.replicated(self.mesh)
    return jax.jit(step, in_shardings=(self.state_sharding, self.batch_sharding),
                   out_shardings=(self.state_sharding, replicated), donate_argnums=(0,))

  def jit_eval_step(self):
    return jax.jit(make_eval_step(self.model),
                   in_shardings=(self.state_sharding.params, self.batch_sharding),
                   out_shardings=state_lib.replicated(self.mesh))

  def compile_train_step(self):
    """Lowers and compiles the train step against abstract inputs (no allocation)."""
    train = self.config.train
    abstract = state_lib.with_shardings(self.abstract_state, self.state_sharding)
    with self.context():
      return self.jit_train_step().lower(
          abstract, self.batch_abstract(train.global_batch, train.seq_len)).compile()


class _Context:
  def __init__(self, mesh, rules):
    self._mesh_ctx = jax.set_mesh(mesh)
    self._rules_ctx = nn.logical_axis_rules(rules)

  def __enter__(self):
    self._mesh_ctx.__enter__()
    self._rules_ctx.__enter__()

  def __exit__(self, *exc):
    self._rules_ctx.__exit__(*exc)
    return self._mesh_ctx.__exit__(*exc)


def build_setup(config: ml_collections.ConfigDict,
                devices: Sequence[jax.Device] | None = None) -> TrainSetup:
  """Builds model, optimizer, mesh and shardings for `config` (on `devices`, default all)."""
  model_cfg = TransformerConfig.from_config(config.model)
  model_cfg.validate()
  model = Transformer(model_cfg)
  mesh = build_mesh(config.mesh, devices)
  # Rules may come back from JSON as nested lists; flax wants (name, axis | tuple of axes).
  rules = tuple((name, tuple(axes) if isinstance(axes, list) else axes)
                for name, axes in config.logical_axis_rules)
  tx, schedule = build_optimizer(config.optimizer, int(config.train.steps))
  seq_len = int(config.train.seq_len)

  def init_params(rng):
    return model.init(rng, jnp.zeros((1, seq_len), jnp.int32))["params"]

  abstract_params, params_sharding = state_lib.param_shardings(init_params, mesh, rules)
  state_lib.check_divisible(abstract_params, params_sharding)
  abstract_state, state_sharding = state_lib.state_shardings(abstract_params, params_sharding,
                                                             tx, mesh)
  batch_sharding = nn.logical_to_mesh_sharding(jax.sharding.PartitionSpec(*BATCH_AXES), mesh,
                                               rules)
  return TrainSetup(config=config, model_cfg=model_cfg, model=model, tx=tx, schedule=schedule,
                    mesh=mesh, rules=rules, abstract_state=abstract_state,
                    state_sharding=state_sharding, batch_sharding=batch_sharding,
                    init_params=init_params)
