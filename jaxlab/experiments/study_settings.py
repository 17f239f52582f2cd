"""What every study's settings read alike from its config (`scir_settings`, `tl_settings`)."""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxlab.config import settings_from_section
from jaxlab.models.transformer import TransformerConfig
from jaxlab.parallel.mesh import rules_from_config
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.optimizer import AdamWSettings
from jaxlab.train.wandb_logging import wandb_settings


def common_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The settings fields every study shares, read from `config`: seeds, methods, model,
  optimizer, checkpoint, mesh, rules (from logical_axis_rules), topology and the W&B hook
  (`logging.wandb`, which `run` points at the study's workdir)."""
  return dict(
    seeds=tuple(int(s) for s in config.seeds),
    methods=tuple(config.methods),
    model=TransformerConfig.from_config(config.model),
    optimizer=settings_from_section(AdamWSettings, config.optimizer, "optimizer"),
    checkpoint=settings_from_section(CheckpointSettings, config.checkpoint, "checkpoint"),
    mesh=config.mesh,
    rules=rules_from_config(config.logical_axis_rules),
    topology=config.topology,
    wandb=wandb_settings(config),
  )
