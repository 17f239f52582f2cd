"""Load a trained jaxlab LM run (config.json + latest checkpoint) for evaluation or sampling."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from jaxlab import fileio
from jaxlab.data.tokenizers import Tokenizer, build_tokenizer
from jaxlab.experiments.lm_pretrain import LMSettings, lm_init_variables
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.parallel.mesh import batch_sharding, build_mesh, mesh_context
from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.state import variable_shardings, with_shardings


@dataclasses.dataclass
class LoadedRun:
  """A run's model settings, mesh, restored (sharded) parameters and tokenizer."""

  model_cfg: TransformerConfig
  mesh: jax.sharding.Mesh
  rules: tuple
  params: Any
  tokenizer: Tokenizer

  def context(self):
    """Mesh + logical rules, for tracing the model on this run's mesh."""
    return mesh_context(self.mesh, self.rules)

  @property
  def batch_sharding(self) -> jax.sharding.NamedSharding:
    return batch_sharding(self.mesh, self.rules)


def load_run(
  workdir: str,
  devices: Sequence[jax.Device] | None = None,
  mesh_overrides: dict[str, int] | None = None,
) -> LoadedRun:
  """Restores the latest parameters of the run in `workdir`, sharded over `devices`.

  The mesh comes from the run's config unless overridden (e.g. a different slice for eval).
  """
  config_path = os.path.join(workdir, "config.json")
  if not fileio.isfile(config_path):
    raise FileNotFoundError(f"{workdir} is not a jaxlab run: no config.json")
  config = ml_collections.ConfigDict(fileio.read_json(config_path))
  if mesh_overrides:
    config.mesh.update(mesh_overrides)
  settings = LMSettings.from_config(config)
  mesh = build_mesh(settings.mesh, devices)
  init = lm_init_variables(Transformer(settings.model), settings.train.seq_len)
  abstract, shardings = variable_shardings(init, mesh, settings.rules)
  checkpointer = Checkpointer(workdir)
  try:
    params = checkpointer.restore_params(with_shardings(abstract["params"], shardings["params"]))
  finally:
    checkpointer.close()
  return LoadedRun(
    model_cfg=settings.model,
    mesh=mesh,
    rules=settings.rules,
    params=params,
    tokenizer=build_tokenizer(settings.data.tokenizer),
  )
