"""The `tl_training` study's config sections, read once into typed settings: the methods and
the SFT variant each one's model is, the settings dataclasses, `validate` (the config and the files
it names) and `tl_config` (a complete config with every section's defaults)."""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections

from jaxlab import fileio
from jaxlab.config import ConfigError, settings_from_section
from jaxlab.data import key_tokens, tool_task
from jaxlab.data.tokenizers import ByteTokenizer, Tokenizer, WordTokenizer
from jaxlab.data.tool_use import DEFAULT_ERROR_MARKERS
from jaxlab.experiments.study_settings import common_fields
from jaxlab.models.transformer import TransformerConfig
from jaxlab.objectives import ppo
from jaxlab.parallel.mesh import mesh_shape
from jaxlab.parallel.topology import parse_topology
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.optimizer import AdamWSettings
from jaxlab.train.wandb_config import WandbSettings

METHODS = ("sft", "sft_mae", "sft_mae_pkt", "tl")
# SFT variant -> (MAE, PKT); the method whose model each variant is.
VARIANTS = {"sft": (False, False), "sft_mae": (True, False), "sft_mae_pkt": (True, True)}
METHOD_VARIANT = {
  "sft": "sft",
  "sft_mae": "sft_mae",
  "sft_mae_pkt": "sft_mae_pkt",
  "tl": "sft_mae_pkt",
}


@dataclasses.dataclass(frozen=True)
class TaskSettings:
  """Where trajectories and test items come from (see the `tl_training` docstring)."""

  kind: str = "synthetic"  # synthetic | files
  train_trajectories: int = 2000
  test_items: int = 128
  levels: tuple[str, ...] = tool_task.LEVELS
  tools_per_item: int = 4
  adverse_share: float = 0.25
  name_noise_share: float = 0.25
  seed: int = 0  # the data's seed: the same data for every training seed
  tokenizer: str = "words"  # synthetic task from scratch: words (tool_task.vocabulary) | byte
  train_file: str = ""
  test_files: tuple[str, ...] = ()  # "name=path"
  error_markers: tuple[str, ...] = DEFAULT_ERROR_MARKERS  # MAE's markers


@dataclasses.dataclass(frozen=True)
class StartSettings:
  """A jaxlab LM run to fine-tune (its tokenizer too); "" trains from scratch, byte-level."""

  run: str = ""


@dataclasses.dataclass(frozen=True)
class SFTSettings:
  """Every SFT variant's budget: the same steps, batch and rows."""

  steps: int = 400
  batch_size: int = 32
  seq_len: int = 320
  lr: float = 3e-3
  warmup_steps: int = 20
  w_max: float = key_tokens.DEFAULT_W_MAX
  log_every: int = 50


@dataclasses.dataclass(frozen=True)
class RLSettings:
  """TL's PPO stage: rollouts and optimizers (PPO's coefficients are the `ppo` section)."""

  steps: int = 100
  batch_size: int = 32
  seq_len: int = 384
  max_new_tokens: int = 64
  temperature: float = 0.0  # 0: greedy rollouts, as in the reference
  top_p: float = 1.0
  actor_lr: float = 2e-7
  critic_lr: float = 1e-7
  warmup_steps: int = 100
  log_every: int = 10


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  max_new_tokens: int = 64
  batch_size: int = 64


@dataclasses.dataclass(frozen=True)
class TLStudySettings:
  seeds: tuple[int, ...]
  methods: tuple[str, ...]
  model: TransformerConfig
  task: TaskSettings
  start: StartSettings
  sft: SFTSettings
  rl: RLSettings
  ppo: ppo.PPOSettings
  eval: EvalSettings
  optimizer: AdamWSettings
  checkpoint: CheckpointSettings
  mesh: ml_collections.ConfigDict
  rules: tuple
  topology: str
  wandb: WandbSettings = WandbSettings()

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> TLStudySettings:
    return cls(
      **common_fields(config),
      task=settings_from_section(TaskSettings, config.task, "task"),
      start=settings_from_section(StartSettings, config.start, "start"),
      sft=settings_from_section(SFTSettings, config.sft, "sft"),
      rl=settings_from_section(RLSettings, config.rl, "rl"),
      ppo=settings_from_section(ppo.PPOSettings, config.ppo, "ppo"),
      eval=settings_from_section(EvalSettings, config.eval, "eval"),
    )

  def tool_task(self) -> tool_task.ToolTask:
    t = self.task
    return tool_task.ToolTask(t.tools_per_item, t.adverse_share, t.name_noise_share)


# ---------------------------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config (and, unless `dry_run`, the files it names); raises ConfigError."""
  try:
    s = TLStudySettings.from_config(config)
    s.model.validate()
    s.ppo.validate()
    s.optimizer.validate()
    s.checkpoint.validate()
    s.wandb.validate()
    if s.task.kind == "synthetic":
      s.tool_task().validate()
    num_devices = parse_topology(s.topology).num_chips if s.topology else jax.device_count()
  except ValueError as e:
    raise ConfigError(str(e)) from None
  unknown = [m for m in s.methods if m not in METHODS]
  if unknown or not s.methods or len(set(s.methods)) != len(s.methods):
    raise ConfigError(f"methods must be distinct names from {', '.join(METHODS)}, got {s.methods}")
  if not s.seeds or len(set(s.seeds)) != len(s.seeds):
    raise ConfigError(f"seeds must be distinct and at least one, got {s.seeds}")
  counts = [
    ("sft.steps", s.sft.steps),
    ("sft.batch_size", s.sft.batch_size),
    ("sft.seq_len", s.sft.seq_len),
    ("sft.log_every", s.sft.log_every),
    ("rl.steps", s.rl.steps),
    ("rl.batch_size", s.rl.batch_size),
    ("rl.max_new_tokens", s.rl.max_new_tokens),
    ("rl.log_every", s.rl.log_every),
    ("eval.max_new_tokens", s.eval.max_new_tokens),
    ("eval.batch_size", s.eval.batch_size),
    ("task.train_trajectories", s.task.train_trajectories),
    ("task.test_items", s.task.test_items),
  ]
  for name, value in counts:
    if value < 1:
      raise ConfigError(f"{name} must be at least 1, got {value}")
  if not s.sft.lr > 0:
    raise ConfigError(f"sft.lr must be positive, got {s.sft.lr}")
  for name in ("actor_lr", "critic_lr"):
    if not getattr(s.rl, name) > 0:
      raise ConfigError(f"rl.{name} must be positive, got {getattr(s.rl, name)}")
  if s.rl.temperature < 0:
    raise ConfigError(f"rl.temperature must be >= 0 (0: greedy), got {s.rl.temperature}")
  if not 0 < s.rl.top_p <= 1:
    raise ConfigError(f"rl.top_p must be in (0, 1], got {s.rl.top_p}")
  if s.rl.seq_len <= s.rl.max_new_tokens + 1:
    raise ConfigError(
      f"rl.seq_len={s.rl.seq_len} leaves no room for a prompt before "
      f"rl.max_new_tokens={s.rl.max_new_tokens}"
    )
  for name, length in (("sft.seq_len", s.sft.seq_len), ("rl.seq_len", s.rl.seq_len)):
    if length > s.model.max_seq_len:
      raise ConfigError(f"{name}={length} exceeds model.max_seq_len={s.model.max_seq_len}")
  if s.eval.max_new_tokens + 2 > s.model.max_seq_len:
    raise ConfigError(
      f"eval.max_new_tokens={s.eval.max_new_tokens} leaves no room for a prompt in "
      f"model.max_seq_len={s.model.max_seq_len}"
    )
  data, fsdp, _ = mesh_shape(s.mesh, num_devices)
  for name, batch in (("sft.batch_size", s.sft.batch_size), ("rl.batch_size", s.rl.batch_size)):
    if batch % (data * fsdp):
      raise ConfigError(
        f"{name}={batch} is not divisible by the data x fsdp mesh size {data * fsdp}"
      )
  if s.task.tokenizer not in ("words", "byte"):
    raise ConfigError(f"task.tokenizer must be words or byte, got {s.task.tokenizer!r}")
  if s.task.kind not in ("synthetic", "files"):
    raise ConfigError(f"task.kind must be synthetic or files, got {s.task.kind!r}")
  unknown_levels = [level for level in s.task.levels if level not in tool_task.LEVELS]
  if s.task.kind == "synthetic" and (unknown_levels or not s.task.levels):
    raise ConfigError(
      f"task.levels must be from {', '.join(tool_task.LEVELS)}, got {s.task.levels}"
    )
  if dry_run:
    return
  if s.task.kind == "files":
    _validate_files(s)
  elif s.start.run:
    raise ConfigError("start.run is for task.kind=files; the synthetic task trains from scratch")
  if not s.start.run:
    tokenizer = scratch_tokenizer(s)
    if s.model.vocab_size < tokenizer.vocab_size:
      raise ConfigError(
        f"model.vocab_size={s.model.vocab_size} is smaller than the {s.task.tokenizer} "
        f"tokenizer's {tokenizer.vocab_size} tokens"
      )


def named_test_files(s: TLStudySettings) -> dict[str, str]:
  files = {}
  for entry in s.task.test_files:
    name, eq, path = entry.partition("=")
    if not eq or not name.isidentifier():
      raise ConfigError(
        f"task.test_files entries are name=path with an identifier name, got {entry!r}"
      )
    files[name] = path
  return files


def _validate_files(s: TLStudySettings) -> None:
  if not s.task.train_file or not fileio.isfile(s.task.train_file):
    raise ConfigError(f"task.train_file not found: {s.task.train_file!r}")
  files = named_test_files(s)
  if not files:
    raise ConfigError("task.kind=files needs task.test_files (name=path, ...)")
  for path in files.values():
    if not fileio.isfile(path):
      raise ConfigError(f"test file not found: {path}")
  if s.start.run and not fileio.isfile(os.path.join(s.start.run, "config.json")):
    raise ConfigError(f"{s.start.run} is not a jaxlab run: no config.json")


def scratch_tokenizer(s: TLStudySettings) -> Tokenizer:
  """The tokenizer of a model trained from scratch: the synthetic task's word list on bytes
  (task.tokenizer=words), else bytes."""
  if s.task.kind == "synthetic" and s.task.tokenizer == "words":
    return WordTokenizer(tool_task.vocabulary())
  return ByteTokenizer()


# ---------------------------------------------------------------------------------- config


def tl_config(**model_overrides) -> ml_collections.ConfigDict:
  """A complete `tl_training` config; sections default to the settings dataclasses' defaults
  (the optimizer to TL-Training's AdamW (0.9, 0.95) with weight decay 0.01)."""
  from jaxlab import presets
  from jaxlab.config import section_defaults
  from jaxlab.parallel.mesh import default_logical_rules, default_mesh_config

  config = ml_collections.ConfigDict()
  config.experiment = "tl_training"
  config.seeds = (0, 1, 2)
  config.methods = METHODS
  config.model = presets.model_config(**model_overrides)
  config.task = section_defaults(TaskSettings)
  config.start = section_defaults(StartSettings)
  config.sft = section_defaults(SFTSettings)
  config.rl = section_defaults(RLSettings)
  config.ppo = section_defaults(ppo.PPOSettings)
  config.eval = section_defaults(EvalSettings)
  config.optimizer = section_defaults(AdamWSettings)
  config.optimizer.update(b1=0.9, b2=0.95, weight_decay=0.01)
  config.checkpoint = section_defaults(CheckpointSettings)
  config.mesh = default_mesh_config()
  config.logical_axis_rules = default_logical_rules()
  config.topology = ""
  return config
