"""The `logging.wandb` config section (the Weights & Biases hook, off by default) as a frozen
dataclass, and how its runs are named. A leaf module: jaxlab.config adds `logging_defaults()` to
every config it loads; the hook itself is jaxlab.train.wandb_logging."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from jaxlab import fileio

MODES = ("online", "offline")
MISSING_PACKAGE = (
  "logging.wandb.enabled needs the wandb package, which is not installed: "
  "pip install 'jaxlab[wandb]'"
)
# Fields filled by the code, not config keys.
NOT_IN_CONFIG = ("run_config", "study_dir")


@dataclasses.dataclass(frozen=True)
class WandbSettings:
  """The `logging.wandb` section, plus what the study fills in (`run_config`, `study_dir`)."""

  enabled: bool = False
  project: str = "jaxlab"
  entity: str = ""  # "": the logged-in user's default entity
  name: str = ""  # "": the workdir's last part (in a study: the study's, plus the run's path)
  group: str = ""  # "": none (in a study: the study's name)
  tags: tuple[str, ...] = ()
  mode: str = "online"  # or "offline"
  run_config: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
  study_dir: str = ""  # the workdir of a study whose runs live under it

  def validate(self) -> None:
    """Raises ValueError (one line) for a bad field, or when enabled without wandb installed."""
    if self.mode not in MODES:
      raise ValueError(f"logging.wandb.mode must be online or offline, got {self.mode!r}")
    if not isinstance(self.tags, (tuple, list)) or not all(isinstance(t, str) for t in self.tags):
      raise ValueError(f"logging.wandb.tags must be a tuple of strings, got {self.tags!r}")
    if self.enabled:
      if not self.project:
        raise ValueError("logging.wandb.project is empty")
      _check_installed()

  def in_study(self, study_dir: str) -> WandbSettings:
    """These settings for the runs a study trains under `study_dir`."""
    return dataclasses.replace(self, study_dir=study_dir)

  def run_name(self, workdir: str) -> str:
    if not self.study_dir:
      return self.name or _last_part(workdir)
    study = self.name or _last_part(self.study_dir)
    below = _path_below(workdir, self.study_dir)
    return f"{study}/{below}" if below else study

  def group_name(self) -> str:
    if self.group or not self.study_dir:
      return self.group
    return self.name or _last_part(self.study_dir)


def name_in_study(section: ml_collections.ConfigDict, study_dir: str, run_dir: str) -> None:
  """Sets the `name` and `group` of a `logging.wandb` section as `in_study` names the run in
  `run_dir`: for a study that hands each run a config of its own."""
  settings = WandbSettings(name=section.name, group=section.group).in_study(study_dir)
  section.update(name=settings.run_name(run_dir), group=settings.group_name())


def logging_defaults() -> ml_collections.ConfigDict:
  """The `logging` section every config gets (jaxlab.config.load_config adds what a file leaves
  out), so `--config.logging.wandb.enabled=True` works for every study."""
  fields = dataclasses.fields(WandbSettings)
  wandb = {f.name: f.default for f in fields if f.name not in NOT_IN_CONFIG}
  return ml_collections.ConfigDict({"wandb": wandb})


def _check_installed() -> None:
  try:
    import wandb  # noqa: F401
  except ImportError:
    raise ValueError(MISSING_PACKAGE) from None


def _last_part(path: str) -> str:
  path = fileio.absolute(path).rstrip("/")
  return path.rsplit("/", 1)[-1]


def _path_below(path: str, root: str) -> str:
  """`path` relative to `root` ("" when they are the same); `path`'s last part if not below."""
  path, root = fileio.absolute(path).rstrip("/"), fileio.absolute(root).rstrip("/")
  if path == root:
    return ""
  if path.startswith(root + "/"):
    return path[len(root) + 1 :]
  return _last_part(path)
