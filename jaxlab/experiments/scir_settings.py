"""The `scir` study's config sections, read once into typed settings."""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxlab import fileio
from jaxlab.config import settings_from_section
from jaxlab.experiments.study_settings import common_fields
from jaxlab.models.transformer import TransformerConfig
from jaxlab.objectives.scir import SCIRSettings
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.optimizer import AdamWSettings
from jaxlab.train.wandb_config import WandbSettings

METHODS = ("scir", "self_rewarding", "gold_dpo")


@dataclasses.dataclass(frozen=True)
class TaskSettings:
  """Where prompts come from: the synthetic letter task, or a JSONL file of {"prompt": ...}."""

  kind: str = "letters"  # letters | prompts_file
  alphabet: str = "abcdefgh"
  length: int = 8
  prompts_file: str = ""
  train_prompts: int = 128
  eval_prompts: int = 64
  eval_pairs: int = 256


@dataclasses.dataclass(frozen=True)
class StartSettings:
  """How the starting model M_0 (and the label reference M_-1) come about. For the letter task:
  a base model trained on demonstrations of uniform quality (M_-1), continued on better-tilted
  demonstrations mixed with judge demonstrations (M_0). For real use: two LM runs."""

  run: str = ""  # a jaxlab LM run dir to start from (prompts_file tasks)
  label_reference_run: str = ""  # the run the first round's implicit reward compares against
  base_steps: int = 1500
  start_steps: int = 500
  batch_size: int = 32
  lr: float = 3e-3
  demos: int = 4096
  base_bias: float = -0.5
  start_bias: float = -0.2
  judge_share: float = 0.5
  judge_accuracy: float = 0.8
  judge_horizon: int = 4  # the demonstration judge reads only this many letters (0: all)
  seq_len: int = 24


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
  template: str = "{prompt}{response_a}|{response_b}="
  template_file: str = ""  # overrides `template` when set
  verdicts: tuple[str, ...] = ("A", "B")


@dataclasses.dataclass(frozen=True)
class RoundSettings:
  """One self-rewarding round: sampling, pairing and the preference-training budget."""

  iterations: int = 3
  samples_per_prompt: int = 4
  pairs_per_prompt: int = 6
  temperature: float = 0.7
  top_p: float = 0.9
  max_new_tokens: int = 12
  sample_batch: int = 256
  steps: int = 60
  batch_size: int = 32
  lr: float = 1e-3
  seq_len: int = 16
  judge_len: int = 24
  log_every: int = 10


@dataclasses.dataclass(frozen=True)
class SCIRStudySettings:
  seeds: tuple[int, ...]
  methods: tuple[str, ...]
  model: TransformerConfig
  task: TaskSettings
  start: StartSettings
  judge: JudgeSettings
  rounds: RoundSettings
  scir: SCIRSettings
  optimizer: AdamWSettings
  checkpoint: CheckpointSettings
  mesh: ml_collections.ConfigDict
  rules: tuple
  topology: str
  wandb: WandbSettings = WandbSettings()

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> SCIRStudySettings:
    return cls(
      **common_fields(config),
      task=settings_from_section(TaskSettings, config.task, "task"),
      start=settings_from_section(StartSettings, config.start, "start"),
      judge=settings_from_section(JudgeSettings, config.judge, "judge"),
      rounds=settings_from_section(RoundSettings, config.rounds, "rounds"),
      scir=settings_from_section(SCIRSettings, config.scir, "scir"),
    )

  def judge_template(self) -> str:
    if not self.judge.template_file:
      return self.judge.template
    return fileio.read_text(self.judge.template_file).rstrip("\n")
