"""Load a trained jaxlab LM run (config.json + latest checkpoint) for evaluation or sampling."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import ml_collections

from jaxlab.data.tokenizers import Tokenizer, build_tokenizer
from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.setup import TrainSetup, build_setup
from jaxlab.train.state import with_shardings


@dataclasses.dataclass
class LoadedRun:
  """A run's setup (mesh, shardings, model), its restored parameters and its tokenizer."""
  setup: TrainSetup
  params: Any
  tokenizer: Tokenizer


def load_run(workdir: str, devices: Sequence[jax.Device] | None = None,
             mesh_overrides: dict[str, int] | None = None) -> LoadedRun:
  """Restores the latest parameters of the run in `workdir`, sharded over `devices`.

  The mesh comes from the run's config unless overridden (e.g. a different slice for eval).
  """
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{workdir} is not a jaxlab run: no config.json")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if mesh_overrides:
    config.mesh.update(mesh_overrides)
  setup = build_setup(config, devices)
  checkpointer = Checkpointer(workdir, config.checkpoint)
  try:
    params = checkpointer.restore_params(
        with_shardings(setup.abstract_state.params, setup.state_sharding.params))
  finally:
    checkpointer.close()
  return LoadedRun(setup=setup, params=params, tokenizer=build_tokenizer(config.data.tokenizer))
