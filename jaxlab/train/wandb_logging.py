"""Weights & Biases beside TensorBoard: the settings a config's `logging.wandb` section gives
(jaxlab.train.wandb_config, off by default) and the sink through which the Trainer's
MetricsWriter (process 0) also logs each row.

- wandb is imported only when the hook is enabled; enabled without the package installed is a
  one-line ConfigError from the study's `validate`, before anything runs.
- The run's config (flattened to dotted keys) is the W&B run config; each metrics row is logged
  at its step (non-finite values as the floats NaN/Infinity, which W&B draws as gaps, not as the
  strings metrics.jsonl uses); summary.json's values become the run summary.
- The W&B run id is kept in `workdir/wandb_run_id` (through jaxlab.fileio, so bucket workdirs
  too) and the run is opened with `resume="allow"`: a resumed or preempted run continues the same
  W&B run. Rows of steps the W&B run already has (redone after a restore) are skipped.
- The name defaults to the workdir's last part; a study that trains several runs under its
  workdir (SCIR, TL, the SMI sizes) names each by its path there and groups them by the study.
- `mode="offline"` writes the run under the workdir (or $WANDB_DIR) for a later `wandb sync`.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import string
from typing import Any

import ml_collections

from jaxlab import fileio
from jaxlab.cli import first_line
from jaxlab.config import ConfigError, check_known_keys, settings_from_section
from jaxlab.train.wandb_config import MISSING_PACKAGE, WandbSettings, logging_defaults

RUN_ID_FILE = "wandb_run_id"


def wandb_settings(config: ml_collections.ConfigDict) -> WandbSettings:
  """The W&B settings of `config` (defaults where it has no `logging` section), carrying the
  flattened config as the W&B run config. Unknown keys are a one-line ConfigError."""
  section = config.get("logging")
  if section is None:
    return WandbSettings(run_config=flat_config(config))
  check_known_keys(section, logging_defaults(), "logging")
  settings = settings_from_section(
    WandbSettings, section.get("wandb"), "logging.wandb", run_config=flat_config(config)
  )
  if isinstance(settings.tags, list):  # a config reloaded from config.json
    settings = dataclasses.replace(settings, tags=tuple(settings.tags))
  return settings


def flat_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config` as `{"a.b": value}` (tuples as lists), as W&B shows a run's config."""
  flat: dict[str, Any] = {}

  def visit(node: dict, prefix: str) -> None:
    for key, value in node.items():
      if isinstance(value, dict):
        visit(value, f"{prefix}{key}.")
      else:
        flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value

  visit(config.to_dict(), "")
  return flat


def import_wandb():
  """The wandb module; ConfigError (one line) when it is not installed."""
  try:
    import wandb
  except ImportError:
    raise ConfigError(MISSING_PACKAGE) from None
  return wandb


def stable_run_id(workdir: str) -> str:
  """The W&B run id of the run in `workdir`: the one stored there, or a new one, stored."""
  path = os.path.join(workdir, RUN_ID_FILE)
  if fileio.isfile(path):
    run_id = fileio.read_text(path).strip()
    if run_id:
      return run_id
  alphabet = string.ascii_lowercase + string.digits
  run_id = "".join(secrets.choice(alphabet) for _ in range(12))
  fileio.write_text_atomic(path, run_id + "\n")
  return run_id


class WandbSink:
  """One W&B run for the training run in `workdir` (opened, or resumed, on construction)."""

  def __init__(self, settings: WandbSettings, workdir: str):
    wandb = import_wandb()
    self.run_id = stable_run_id(workdir)
    local_dir = None
    if not fileio.is_remote(workdir) and not os.environ.get("WANDB_DIR"):
      local_dir = fileio.absolute(workdir)
    try:
      self._run = wandb.init(
        project=settings.project,
        entity=settings.entity or None,
        name=settings.run_name(workdir),
        group=settings.group_name() or None,
        tags=list(settings.tags) or None,
        mode=settings.mode,
        config=dict(settings.run_config),
        id=self.run_id,
        resume="allow",
        reinit="create_new",  # never hand back another trainer's run
        dir=local_dir,
      )
    except wandb.Error as e:  # not logged in, no network, a bad entity or project
      raise ConfigError(
        f"W&B could not start the run: {first_line(e)} (or set logging.wandb.mode=offline)"
      ) from None
    # A resumed online run continues after its last logged step; W&B drops earlier steps.
    self._next_step = int(self._run.starting_step or 0)

  def log(self, step: int, row: dict[str, Any]) -> None:
    if step < self._next_step:
      return
    self._run.log({k: v for k, v in row.items() if k != "step"}, step=int(step))

  def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
    if summary:
      self._run.summary.update(summary)
    self._run.finish(exit_code=exit_code)
