"""Experiment `tl_training`: TL-Training (arXiv 2412.15495) against standard SFT for tool use.

Methods, all on the same training trajectories with the same SFT step budget:
  sft          standard SFT: every assistant turn a target, every target token weight 1;
  sft_mae      SFT with MAE: turns answered by an error output leave the loss;
  sft_mae_pkt  MAE + PKT: key tokens of the tool name weighted (jaxlab.data.key_tokens);
  tl           the sft_mae_pkt model, then PPO with the error-category reward (IRM): actor,
               frozen reference and critic start from it (jaxlab.objectives.ppo).
Each model is scored with RoTBench's TS / PI / CF on every test set (for the synthetic task:
clean, renamed, misspelled and swapped names), per seed; the table is the mean +- std over seeds.

Data: task.kind=synthetic generates it with `jaxlab.data.tool_task` from task.seed (the same
trajectories and test items for every training seed, written to data/), and also scores the
task's reference rules on the test sets (the oracle that reads the request and the declarations,
and two shallow rules), so the table shows what the generator allows. task.kind=files reads a
training file (jaxlab JSONL, or ToolBench / RoTBench conversations) and named test files
(`name=path`, jaxlab JSONL or RoTBench JSON), and usually starts from a jaxlab LM run
(start.run) whose tokenizer it uses.

Layout: data/ (train.jsonl, test_NAME.jsonl, rules.json), seed_S/VARIANT/train/ (the SFT trainer
of sft, sft_mae, sft_mae_pkt), seed_S/tl/ppo/ (the PPO trainer), seed_S/METHOD/eval.json (its
scores; it marks the method done) beside predictions_NAME.jsonl; results.json, report.md and
report.png at the top. Trainers resume from their checkpoints and finished stages are reloaded,
so running the same command again continues a stopped study.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab.cli import write_jsonl_atomic, write_text_atomic
from jaxlab.config import ConfigError, settings_from_section, write_config
from jaxlab.data import key_tokens, tool_task
from jaxlab.data.rollouts import RolloutSource, prompts_from_examples
from jaxlab.data.source import ArraySource
from jaxlab.data.tokenizers import ByteTokenizer, Tokenizer, WordTokenizer
from jaxlab.data.tool_use import (
  DEFAULT_ERROR_MARKERS,
  Trajectory,
  read_conversations,
  read_jsonl,
  sft_examples,
  tokenize_examples,
)
from jaxlab.eval.run_loading import LoadedRun, load_run
from jaxlab.eval.tool_use import (
  LEVELS as SCORE_LEVELS,
)
from jaxlab.eval.tool_use import (
  generate_predictions,
  read_gold_set,
  read_predictions,
  score,
  write_predictions,
)
from jaxlab.experiments.lm_pretrain import lm_init_variables
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.models.value_head import ValueModel, critic_params
from jaxlab.objectives import ppo
from jaxlab.objectives.lm import LanguageModelObjective
from jaxlab.objectives.tl import Category, call_category
from jaxlab.parallel.mesh import build_mesh, mesh_shape, rules_from_config
from jaxlab.parallel.topology import parse_topology, topology_devices
from jaxlab.progress import Progress
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.metrics import json_safe
from jaxlab.train.optimizer import AdamWSettings, build_optimizer
from jaxlab.train.state import StartingWeights
from jaxlab.train.trainer import Program, Trainer, TrainerSettings

logger = logging.getLogger(__name__)
METHODS = ("sft", "sft_mae", "sft_mae_pkt", "tl")
# SFT variant -> (MAE, PKT); the method whose model each variant is.
VARIANTS = {"sft": (False, False), "sft_mae": (True, False), "sft_mae_pkt": (True, True)}
METHOD_VARIANT = {
  "sft": "sft",
  "sft_mae": "sft_mae",
  "sft_mae_pkt": "sft_mae_pkt",
  "tl": "sft_mae_pkt",
}
SFT_DTYPES = {
  "inputs": jnp.int32,
  "targets": jnp.int32,
  "segment_ids": jnp.int32,
  "positions": jnp.int32,
  "loss_weights": jnp.float32,
}


@dataclasses.dataclass(frozen=True)
class TaskSettings:
  """Where trajectories and test items come from (see the module docstring)."""

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

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> TLStudySettings:
    return cls(
      seeds=tuple(int(s) for s in config.seeds),
      methods=tuple(config.methods),
      model=TransformerConfig.from_config(config.model),
      task=settings_from_section(TaskSettings, config.task, "task"),
      start=settings_from_section(StartSettings, config.start, "start"),
      sft=settings_from_section(SFTSettings, config.sft, "sft"),
      rl=settings_from_section(RLSettings, config.rl, "rl"),
      ppo=settings_from_section(ppo.PPOSettings, config.ppo, "ppo"),
      eval=settings_from_section(EvalSettings, config.eval, "eval"),
      optimizer=settings_from_section(AdamWSettings, config.optimizer, "optimizer"),
      checkpoint=settings_from_section(CheckpointSettings, config.checkpoint, "checkpoint"),
      mesh=config.mesh,
      rules=rules_from_config(config.logical_axis_rules),
      topology=config.topology,
    )

  def tool_task(self) -> tool_task.ToolTask:
    t = self.task
    return tool_task.ToolTask(t.tools_per_item, t.adverse_share, t.name_noise_share)


def _stage(message: str) -> None:
  print(f"[tl_training] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config (and, unless `dry_run`, the files it names); raises ConfigError."""
  try:
    s = TLStudySettings.from_config(config)
    s.model.validate()
    s.ppo.validate()
    s.optimizer.validate()
    s.checkpoint.validate()
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
    tokenizer = _scratch_tokenizer(s)
    if s.model.vocab_size < tokenizer.vocab_size:
      raise ConfigError(
        f"model.vocab_size={s.model.vocab_size} is smaller than the {s.task.tokenizer} "
        f"tokenizer's {tokenizer.vocab_size} tokens"
      )


def _test_files(s: TLStudySettings) -> dict[str, str]:
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
  if not s.task.train_file or not os.path.isfile(s.task.train_file):
    raise ConfigError(f"task.train_file not found: {s.task.train_file!r}")
  files = _test_files(s)
  if not files:
    raise ConfigError("task.kind=files needs task.test_files (name=path, ...)")
  for path in files.values():
    if not os.path.isfile(path):
      raise ConfigError(f"test file not found: {path}")
  if s.start.run and not os.path.isfile(os.path.join(s.start.run, "config.json")):
    raise ConfigError(f"{s.start.run} is not a jaxlab run: no config.json")


# ---------------------------------------------------------------------------------- data


@dataclasses.dataclass
class StudyData:
  """Training trajectories and the gold files of the test sets (name -> path)."""

  train: list[Trajectory]
  test_files: dict[str, str]
  rules: dict[str, dict[str, dict[str, float]]]  # synthetic only: set -> rule -> scores


def _read_trajectories(path: str) -> list[Trajectory]:
  try:
    with open(path, encoding="utf-8") as f:
      head = f.read(1 << 12).lstrip()
    read = read_conversations if head.startswith("[") else read_jsonl
    return read(path).trajectories
  except (OSError, ValueError) as e:
    raise ConfigError(f"task.train_file: {e}") from None


def _study_data(s: TLStudySettings, workdir: str) -> StudyData:
  """The synthetic task's trajectories and test files (regenerated identically from task.seed on
  every run, written to data/) and its rule scores, or the configured files."""
  if s.task.kind == "files":
    return StudyData(_read_trajectories(s.task.train_file), _test_files(s), {})
  data_dir = os.path.join(workdir, "data")
  task, seed = s.tool_task(), s.task.seed
  train = task.train_trajectories(s.task.train_trajectories, np.random.default_rng([seed, 0]))
  seen = [tool_task.prompt_key(t.messages[0].content, t.messages[1].content) for t in train]
  tests, files = {}, {}
  for level in s.task.levels:
    rng = np.random.default_rng([seed, 1, tool_task.LEVELS.index(level)])
    tests[level] = task.test_trajectories(level, s.task.test_items, rng, exclude=seen)
    files[level] = os.path.join(data_dir, f"test_{level}.jsonl")
  if jax.process_index() == 0:
    os.makedirs(data_dir, exist_ok=True)
    write_jsonl_atomic(
      os.path.join(data_dir, "train.jsonl"), [tool_task.trajectory_record(t) for t in train]
    )
    for level, items in tests.items():
      write_jsonl_atomic(files[level], [tool_task.trajectory_record(t) for t in items])
    vocab = "".join(word + "\n" for word in tool_task.vocabulary())
    write_text_atomic(os.path.join(data_dir, "vocab.txt"), vocab)  # task.tokenizer=words
  rules = {level: tool_task.rule_scores(items) for level, items in tests.items()}
  _write_json(os.path.join(data_dir, "rules.json"), rules)
  return StudyData(train, files, rules)


def _sft_arrays(
  s: TLStudySettings, data: StudyData, tokenizer: Tokenizer
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]]]:
  """Each SFT variant's rows, and its counts (kept / MAE-dropped examples, truncated rows)."""
  arrays, counts = {}, {}
  for variant, (mae, pkt) in VARIANTS.items():
    markers = s.task.error_markers if mae else None
    examples, example_counts = sft_examples(data.train, markers)
    try:
      rows, row_counts = tokenize_examples(
        examples, tokenizer, s.sft.seq_len, pkt=pkt, w_max=s.sft.w_max, skip_too_long=True
      )
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if row_counts.rows < s.sft.batch_size:
      raise ConfigError(
        f"{variant}: {row_counts.rows} training rows, fewer than sft.batch_size={s.sft.batch_size}"
      )
    arrays[variant] = rows
    counts[variant] = {
      "examples": example_counts.kept,
      "mae_dropped": example_counts.mae_dropped,
      "rows": row_counts.rows,
      "truncated": row_counts.truncated,
      "too_long": row_counts.too_long,
    }
  return arrays, counts


# ---------------------------------------------------------------------------------- stages


class Preempted(Exception):
  """A stage stopped on SIGTERM/SIGINT after checkpointing: the study stops and resumes later."""


@dataclasses.dataclass
class Context:
  """What every stage of one seed shares."""

  settings: TLStudySettings
  seed: int
  model_cfg: TransformerConfig
  tokenizer: Tokenizer
  mesh: jax.sharding.Mesh
  start_params: Any  # the run fine-tuned (files tasks), or None

  def trainer_settings(self, steps: int, log_every: int) -> TrainerSettings:
    c = self.settings.checkpoint
    return TrainerSettings(
      steps=steps,
      log_every=log_every,
      checkpoint_every=c.every,
      checkpoint_keep=c.keep,
      async_checkpoints=c.use_async,
      seed=self.seed,
    )

  def sft(self, workdir: str, arrays: dict[str, np.ndarray]) -> Any:
    """Trains (or resumes, or reloads) one SFT variant; returns its parameters."""
    s = self.settings
    model = Transformer(self.model_cfg)
    opt = dataclasses.replace(s.optimizer, lr=s.sft.lr, warmup_steps=s.sft.warmup_steps)
    tx, schedule = build_optimizer(opt, s.sft.steps)
    start = None if self.start_params is None else StartingWeights(params=self.start_params)
    program = Program(
      LanguageModelObjective(model),
      lm_init_variables(model, s.sft.seq_len),
      tx,
      schedule,
      start=start,
    )
    spec = sft_batch_spec(s.sft.batch_size, s.sft.seq_len)
    trainer = Trainer(
      self.trainer_settings(s.sft.steps, s.sft.log_every),
      program,
      ArraySource(arrays, s.sft.batch_size, self.seed),
      spec,
      mesh=self.mesh,
      rules=s.rules,
      workdir=workdir,
    )
    _check_finished(trainer.run())
    return trainer.latest_params()

  def ppo(self, workdir: str, start: Any, prompts) -> tuple[Any, dict[str, Any]]:
    """TL's PPO stage from the SFT parameters `start`; returns the actor and a summary."""
    s, r = self.settings, self.settings.rl
    actor, critic = Transformer(self.model_cfg), ValueModel(self.model_cfg)
    source = RolloutSource(
      prompts,
      self.tokenizer,
      actor,
      critic,
      s.ppo,
      batch_size=r.batch_size,
      seq_len=r.seq_len,
      max_new_tokens=r.max_new_tokens,
      temperature=r.temperature,
      top_p=r.top_p,
      seed=self.seed,
    )
    trainer = Trainer(
      self.trainer_settings(r.steps, r.log_every),
      ppo_program(s, self.model_cfg, start),
      source,
      ppo.batch_fields(r.seq_len, r.batch_size),
      mesh=self.mesh,
      rules=s.rules,
      workdir=workdir,
    )
    trainer.add_hook(lambda state, step: source.pop_metrics(), every=r.log_every)
    summary = trainer.run()
    _check_finished(summary)
    return trainer.latest_params()["actor"], _ppo_summary(workdir, summary, source.cut)

  def loaded_run(self, params: Any) -> LoadedRun:
    return LoadedRun(self.model_cfg, self.mesh, self.settings.rules, params, self.tokenizer)


def _check_finished(summary: dict[str, Any]) -> None:
  """Raises Preempted unless the trainer reached its last step (a run stopped by a signal right
  at its last step is finished: its summary says preempted but nothing is left to do)."""
  if summary["step"] < summary["total_steps"]:
    raise Preempted()


def sft_batch_spec(batch_size: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
  return {k: jax.ShapeDtypeStruct((batch_size, seq_len), v) for k, v in SFT_DTYPES.items()}


def ppo_program(
  s: TLStudySettings, model_cfg: TransformerConfig, start: Any | None = None
) -> Program:
  """The PPO program: actor + critic trained, the reference frozen; from `start` (SFT params)."""
  actor, critic = Transformer(model_cfg), ValueModel(model_cfg)
  r = s.rl
  opt = dataclasses.replace(s.optimizer, warmup_steps=r.warmup_steps)
  tx, schedule = ppo.actor_critic_optimizer(opt, r.actor_lr, r.critic_lr, r.steps)
  weights = None
  if start is not None:
    weights = StartingWeights(
      params={"actor": start, "critic": critic_params(start, model_cfg)},
      frozen={"reference": start},
    )
  return Program(
    ppo.PPOObjective(actor, critic, s.ppo),
    ppo.actor_critic_init(actor, critic, r.seq_len),
    tx,
    schedule,
    init_frozen=ppo.reference_frozen,
    start=weights,
  )


def _ppo_summary(workdir: str, summary: dict[str, Any], cut: int) -> dict[str, Any]:
  """First and last logged rollout metrics, and the last PPO losses, of a PPO run."""
  rows = []
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.isfile(path):
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  rollouts = [row for row in rows if "rollout_reward" in row]
  keys = ("rollout_reward", "rollout_share_correct", "rollout_kl", "rollout_explained_variance")
  out: dict[str, Any] = {"prompts_cut": cut, "wall_time_s": summary.get("wall_time_s")}
  if rollouts:
    out["first"] = {k: rollouts[0].get(k) for k in keys}
    out["last"] = {k: rollouts[-1].get(k) for k in keys}
  for key in ("loss", "policy_loss", "value_loss", "clip_fraction", "kl", "approx_kl"):
    if key in summary:
      out[key] = summary[key]
  return out


# ---------------------------------------------------------------------------------- evaluation


def _evaluate(ctx: Context, params: Any, data: StudyData, method_dir: str) -> dict[str, Any]:
  """TS / PI / CF on every test set (predictions written beside), and the share of each reward
  category on jaxlab-format sets."""
  e = ctx.settings.eval
  scores, categories = {}, {}
  started = time.perf_counter()
  for name, path in data.test_files.items():
    try:
      gold = read_gold_set(path)
    except (OSError, ValueError) as err:
      raise ConfigError(str(err)) from None
    texts, _ = generate_predictions(
      ctx.loaded_run(params),
      gold.prompts,
      max_new_tokens=e.max_new_tokens,
      batch_size=e.batch_size,
    )
    predictions = os.path.join(method_dir, f"predictions_{name}.jsonl")
    os.makedirs(method_dir, exist_ok=True)
    write_predictions(predictions, gold, texts)
    scores[name] = score(read_predictions(predictions, gold), gold.items)
    if gold.format == "jaxlab":
      categories[name] = _category_shares(gold.records, texts)
  return {
    "scores": scores,
    "categories": categories,
    "eval_time_s": time.perf_counter() - started,
  }


def _category_shares(records: Sequence[dict], texts: Sequence[str]) -> dict[str, float]:
  """The share of each reward category among the predictions whose gold call the reward can
  score (it parses and fits the declared tools)."""
  counts = {c.value: 0 for c in Category}
  scored = 0
  for record, text in zip(records, texts):
    gold = next(m["content"] for m in reversed(record["messages"]) if m["role"] == "Assistant")
    tools = {name: tuple(params) for name, params in record.get("tools", {}).items()}
    try:
      counts[call_category(text, gold, tools).value] += 1
    except ValueError:
      continue
    scored += 1
  return {k: v / max(scored, 1) for k, v in counts.items()}


def _read_json(path: str) -> Any:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, value: Any) -> None:
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text_atomic(path, json.dumps(json_safe(value), indent=2) + "\n")


# ---------------------------------------------------------------------------------- the study


# Model fields that change how a run computes, not its weights: config.model sets them even for
# a start.run, whose shape fields are its own.
_RUNTIME_FIELDS = (
  "dtype",
  "remat_policy",
  "attention_impl",
  "attention_query_block",
  "loss_impl",
)


def _starting_point(s: TLStudySettings) -> tuple[Tokenizer, TransformerConfig, Any]:
  """(tokenizer, model config, starting parameters or None)."""
  if s.start.run:
    loaded = load_run(s.start.run)
    cfg = dataclasses.replace(
      loaded.model_cfg, **{name: getattr(s.model, name) for name in _RUNTIME_FIELDS}
    )
    return loaded.tokenizer, cfg, loaded.params
  return _scratch_tokenizer(s), s.model, None


def _scratch_tokenizer(s: TLStudySettings) -> Tokenizer:
  """The tokenizer of a model trained from scratch: the synthetic task's word list on bytes
  (task.tokenizer=words), else bytes."""
  if s.task.kind == "synthetic" and s.task.tokenizer == "words":
    return WordTokenizer(tool_task.vocabulary())
  return ByteTokenizer()


def _run_seed(
  s: TLStudySettings,
  seed: int,
  workdir: str,
  data: StudyData,
  arrays,
  prompts,
  start,
  devices,
  progress,
) -> dict[str, dict[str, Any]]:
  tokenizer, model_cfg, start_params = start
  ctx = Context(s, seed, model_cfg, tokenizer, build_mesh(s.mesh, devices), start_params)
  seed_dir = os.path.join(workdir, f"seed_{seed}")
  trained: dict[str, Any] = {}

  def variant_params(variant: str) -> Any:
    if variant not in trained:
      _stage(f"seed {seed}: SFT {variant}")
      trained[variant] = ctx.sft(os.path.join(seed_dir, variant, "train"), arrays[variant])
    return trained[variant]

  rows = {}
  for method in s.methods:
    method_dir = os.path.join(seed_dir, method)
    done = _read_json(os.path.join(method_dir, "eval.json"))
    if done is None:
      params = variant_params(METHOD_VARIANT[method])
      extra = {}
      if method == "tl":
        _stage(f"seed {seed}: PPO from sft_mae_pkt")
        params, extra["ppo"] = ctx.ppo(os.path.join(method_dir, "ppo"), params, prompts)
      _stage(f"seed {seed}: evaluating {method}")
      done = {**_evaluate(ctx, params, data, method_dir), **extra}
      _write_json(os.path.join(method_dir, "eval.json"), done)
    rows[method] = done
    progress.tick()
  return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
  array = np.asarray(values, np.float64)
  return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def aggregate(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
  """method -> test set -> level -> {"mean", "std"} over seeds."""
  table: dict[str, Any] = {}
  for method, per_seed in results.items():
    sets = next(iter(per_seed.values()))["scores"]
    table[method] = {
      name: {
        level: dict(
          zip(("mean", "std"), mean_std([r["scores"][name][level] for r in per_seed.values()]))
        )
        for level in SCORE_LEVELS
      }
      for name in sets
    }
  return table


def write_report(summary: dict[str, Any], workdir: str, header: Sequence[str]) -> None:
  """report.md (the table, rule rows, PPO and category summaries) and report.png."""
  table, rules = summary["table"], summary.get("rules", {})
  sets = list(next(iter(table.values())))
  columns = [f"{name} {level}" for name in sets for level in SCORE_LEVELS]
  lines = [
    *header,
    "",
    "| method | " + " | ".join(columns) + " |",
    "|---" * (len(columns) + 1) + "|",
  ]
  for method, row in table.items():
    cells = [
      f"{row[n][lv]['mean']:.1f} ± {row[n][lv]['std']:.1f}" for n in sets for lv in SCORE_LEVELS
    ]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  for rule in ("solve", "name_rule", "canonical_rule"):
    if rules and all(rule in rules.get(n, {}) for n in sets):
      cells = [f"{rules[n][rule][lv]:.1f}" for n in sets for lv in SCORE_LEVELS]
      lines.append(f"| rule: {rule} | " + " | ".join(cells) + " |")
  tl = summary["results"].get("tl", {})
  if tl:
    lines += ["", "PPO (per seed, first -> last logged rollout batch):", ""]
    for seed, row in tl.items():
      p = row.get("ppo", {})
      first, last = p.get("first", {}), p.get("last", {})
      get = lambda d, k: float("nan") if d.get(k) is None else d[k]
      lines.append(
        f"- seed {seed}: reward {get(first, 'rollout_reward'):.3f} -> "
        f"{get(last, 'rollout_reward'):.3f}, correct {get(first, 'rollout_share_correct'):.2f} -> "
        f"{get(last, 'rollout_share_correct'):.2f}, KL {get(last, 'rollout_kl'):.4f}, "
        f"explained variance {get(last, 'rollout_explained_variance'):.3f}, "
        f"clip fraction {get(p, 'clip_fraction'):.3f}, value loss {get(p, 'value_loss'):.4f}"
      )
  first_set = sets[0]
  shares = {
    method: {
      c: float(np.mean([r["categories"][first_set][c] for r in per_seed.values()]))
      for c in next(iter(per_seed.values()))["categories"].get(first_set, {})
    }
    for method, per_seed in summary["results"].items()
    if all(first_set in r.get("categories", {}) for r in per_seed.values())
  }
  if shares:
    used = [c.value for c in Category if any(row.get(c.value, 0) for row in shares.values())]
    lines += [
      "",
      f"Reward categories of the predictions on {first_set} (mean share over seeds):",
      "",
    ]
    lines += ["| method | " + " | ".join(used) + " |", "|---" * (len(used) + 1) + "|"]
    for method, row in shares.items():
      lines.append(f"| {method} | " + " | ".join(f"{row[c]:.3f}" for c in used) + " |")
  write_text_atomic(os.path.join(workdir, "report.md"), "\n".join(lines) + "\n")
  _write_figure(table, sets, os.path.join(workdir, "report.png"))


def _write_figure(table: dict[str, Any], sets: Sequence[str], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  methods = list(table)
  fig, axes = plt.subplots(1, len(SCORE_LEVELS), figsize=(4 * len(SCORE_LEVELS), 3.2), sharey=True)
  width = 0.8 / len(methods)
  for ax, level in zip(axes, SCORE_LEVELS):
    for i, method in enumerate(methods):
      means = [table[method][n][level]["mean"] for n in sets]
      stds = [table[method][n][level]["std"] for n in sets]
      ax.bar(np.arange(len(sets)) + i * width, means, width, yerr=stds, label=method, capsize=2)
    ax.set_xticks(np.arange(len(sets)) + width * (len(methods) - 1) / 2, sets)
    ax.set_title(level)
    ax.set_ylim(0, 100)
  axes[0].set_ylabel("% of test items")
  axes[-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


class _Progress:
  """Study-level progress in evaluated models (each trainer shows its own steps)."""

  def __init__(self, total: int):
    self.done_count = 0
    self.bar = Progress(total, label="tl_training models", unit="model")

  def tick(self) -> None:
    self.done_count += 1
    self.bar.update(self.done_count)

  def close(self) -> None:
    self.bar.close()


def run(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
  """Runs (or resumes) the study on `devices` (default: all); writes results.json, report.md
  and report.png; returns the table."""
  s = TLStudySettings.from_config(config)
  started = time.perf_counter()
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    write_config(config, workdir)
  start = _starting_point(s)
  tokenizer = start[0]
  data = _study_data(s, workdir)
  arrays, counts = _sft_arrays(s, data, tokenizer)
  examples, _ = sft_examples(data.train, s.task.error_markers)
  prompts, unscorable = prompts_from_examples(examples)
  if len(prompts) < s.rl.batch_size and "tl" in s.methods:
    raise ConfigError(f"{len(prompts)} rollout prompts, fewer than rl.batch_size={s.rl.batch_size}")
  progress = _Progress(len(s.seeds) * len(s.methods))
  results: dict[str, dict[str, Any]] = {m: {} for m in s.methods}
  try:
    for seed in s.seeds:
      rows = _run_seed(s, seed, workdir, data, arrays, prompts, start, devices, progress)
      for method, row in rows.items():
        results[method][str(seed)] = row
  except Preempted:
    progress.close()
    _stage("stopped on a signal; run the same command again to resume")
    return {"preempted": True}
  progress.close()
  table = aggregate(results)
  test_sizes = {}
  for name, path in data.test_files.items():
    test_sizes[name] = len(read_gold_set(path).items)
  summary = {
    "table": table,
    "results": results,
    "rules": data.rules,
    "seeds": list(s.seeds),
    "test_sizes": test_sizes,
    "train_trajectories": len(data.train),
    "sft_rows": counts,
    "rollout_prompts": len(prompts),
    "rollout_prompts_unscorable": unscorable,
    "device_kind": (devices or jax.devices())[0].device_kind,
    "num_devices": len(devices or jax.devices()),
    "wall_time_s": time.perf_counter() - started,
  }
  if jax.process_index() == 0:
    _write_json(os.path.join(workdir, "results.json"), summary)
    sizes = ", ".join(f"{name} {n}" for name, n in test_sizes.items())
    write_report(
      summary,
      workdir,
      [
        f"# TL-Training study: {len(s.seeds)} seeds, test items per set: {sizes}",
        "",
        f"TS / PI / CF in % (RoTBench's scorer), mean ± std over seeds {list(s.seeds)}. "
        f"SFT: {s.sft.steps} steps of {s.sft.batch_size} rows for every variant; TL adds "
        f"{s.rl.steps} PPO steps of {s.rl.batch_size} rollouts (kl_coef {s.ppo.kl_coef}).",
      ],
    )
  _stage(f"done in {summary['wall_time_s']:.0f}s: {os.path.join(workdir, 'results.json')}")
  return {"table": table, "wall_time_s": summary["wall_time_s"]}


# ---------------------------------------------------------------------------------- dry run


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles the SFT step and the PPO step (actor + critic trained, reference frozen) ahead of
  time for `config.topology`'s slice (or the local devices); writes dry_run.json with both."""
  s = TLStudySettings.from_config(config)
  devices = topology_devices(s.topology) if s.topology else None
  mesh = build_mesh(s.mesh, devices)
  model = Transformer(s.model)
  tx, schedule = build_optimizer(dataclasses.replace(s.optimizer, lr=s.sft.lr), s.sft.steps)
  sft_program = Program(
    LanguageModelObjective(model), lm_init_variables(model, s.sft.seq_len), tx, schedule
  )
  stages = {
    "sft": (sft_program, sft_batch_spec(s.sft.batch_size, s.sft.seq_len), s.sft.steps),
    "ppo": (ppo_program(s, s.model), ppo.batch_fields(s.rl.seq_len, s.rl.batch_size), s.rl.steps),
  }
  result: dict[str, Any] = {
    "mesh": dict(zip(mesh.axis_names, (int(x) for x in mesh.devices.shape))),
    "num_devices": int(mesh.devices.size),
    "device_kind": mesh.devices.flat[0].device_kind,
  }
  hbm = parse_topology(s.topology).hbm_bytes_per_chip if s.topology else None
  for name, (program, spec, steps) in stages.items():
    trainer = Trainer(
      TrainerSettings(steps=steps), program, None, spec, mesh=mesh, rules=s.rules, workdir=workdir
    )
    started = time.perf_counter()
    _stage(f"compiling the {name} step")
    trainer.compile()
    frozen = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainer.abstract_state.frozen))
    result[name] = {
      "params": trainer.num_params(),
      "frozen_params": frozen,
      "bytes_per_device": trainer.bytes_per_device,
      "batch_size": next(iter(spec.values())).shape[0],
      "seq_len": next(iter(spec.values())).shape[1],
      "compile_s": round(time.perf_counter() - started, 2),
    }
    if hbm is not None:
      result[name]["fits"] = trainer.bytes_per_device <= hbm
  if s.topology:
    result.update(topology=s.topology, hbm_per_device=hbm)
    result["fits"] = all(result[name]["fits"] for name in stages)
  _write_json(os.path.join(workdir, "dry_run.json"), result)
  logger.info("dry run: %s", result)
  return result


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
