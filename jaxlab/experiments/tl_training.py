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

Pieces: `tl_settings` (the config sections, `validate`, `tl_config`), `tl_report` (the table over
seeds, report.md and report.png); this module holds the study's data, its stages (SFT, PPO,
evaluation), `run` and `dry_run`.
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
import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.config import ConfigError, write_config
from jaxlab.data import tool_task
from jaxlab.data.rollouts import RolloutSource, prompts_from_examples
from jaxlab.data.source import ArraySource
from jaxlab.data.tokenizers import Tokenizer
from jaxlab.data.tool_use import (
  Trajectory,
  read_conversations,
  read_jsonl,
  sft_examples,
  tokenize_examples,
)
from jaxlab.eval.run_loading import LoadedRun, load_run
from jaxlab.eval.stats import mean_std
from jaxlab.eval.tool_use import (
  generate_predictions,
  read_gold_set,
  read_predictions,
  score,
  write_predictions,
)
from jaxlab.experiments.lm_pretrain import BATCH_DTYPES, lm_init_variables
from jaxlab.experiments.tl_report import aggregate, write_report
from jaxlab.experiments.tl_settings import (
  METHOD_VARIANT,
  VARIANTS,
  TLStudySettings,
  named_test_files,
  scratch_tokenizer,
)
from jaxlab.experiments.tl_settings import METHODS as METHODS  # re-exported for callers
from jaxlab.experiments.tl_settings import validate as validate  # jaxlab.launch calls it here
from jaxlab.fileio import write_jsonl_atomic, write_text_atomic
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.models.value_head import ValueModel, critic_params
from jaxlab.objectives import ppo
from jaxlab.objectives.lm import LanguageModelObjective
from jaxlab.objectives.tl import Category, call_category
from jaxlab.parallel.mesh import build_mesh
from jaxlab.parallel.topology import parse_topology, topology_devices
from jaxlab.progress import Progress
from jaxlab.train.metrics import json_safe
from jaxlab.train.optimizer import build_optimizer
from jaxlab.train.preemption import Preempted
from jaxlab.train.state import StartingWeights
from jaxlab.train.trainer import Program, Trainer, TrainerSettings

logger = logging.getLogger(__name__)


def _stage(message: str) -> None:
  print(f"[tl_training] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- data


@dataclasses.dataclass
class StudyData:
  """Training trajectories and the gold files of the test sets (name -> path)."""

  train: list[Trajectory]
  test_files: dict[str, str]
  rules: dict[str, dict[str, dict[str, float]]]  # synthetic only: set -> rule -> scores


def _read_trajectories(path: str) -> list[Trajectory]:
  try:
    with fileio.open_file(path) as f:
      head = f.read(1 << 12).lstrip()
    read = read_conversations if head.startswith("[") else read_jsonl
    return read(path).trajectories
  except (OSError, ValueError) as e:
    raise ConfigError(f"task.train_file: {e}") from None


def _study_data(s: TLStudySettings, workdir: str) -> StudyData:
  """The synthetic task's trajectories and test files (regenerated identically from task.seed on
  every run, written to data/) and its rule scores, or the configured files."""
  if s.task.kind == "files":
    return StudyData(_read_trajectories(s.task.train_file), named_test_files(s), {})
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
    fileio.makedirs(data_dir)
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
      wandb=self.settings.wandb,
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
  return {k: jax.ShapeDtypeStruct((batch_size, seq_len), v) for k, v in BATCH_DTYPES.items()}


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
  """A PPO run's rollout metrics averaged over the first and the last quarter of its logged rows
  (one logged row averages a few rollout batches), its clip fraction and approximate KL averaged
  over every logged step (at one update per batch both are 0 by construction), and its last
  losses."""
  rows = []
  path = os.path.join(workdir, "metrics.jsonl")
  if fileio.isfile(path):
    rows = [json.loads(line) for line in fileio.read_text(path).splitlines() if line.strip()]
  rollouts = [row for row in rows if "rollout_reward" in row]
  keys = ("rollout_reward", "rollout_share_correct", "rollout_kl", "rollout_explained_variance")
  out: dict[str, Any] = {"prompts_cut": cut, "wall_time_s": summary.get("wall_time_s")}
  if rollouts:
    quarter = max(1, len(rollouts) // 4)
    out["first"] = {k: mean_std([r.get(k) for r in rollouts[:quarter]])[0] for k in keys}
    out["last"] = {k: mean_std([r.get(k) for r in rollouts[-quarter:]])[0] for k in keys}
  for key in ("clip_fraction", "approx_kl"):
    out[f"{key}_mean"] = mean_std([row[key] for row in rows if key in row])[0]
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
    fileio.makedirs(method_dir)
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


def _write_json(path: str, value: Any) -> None:
  if jax.process_index() == 0:
    fileio.makedirs(os.path.dirname(path))
    fileio.write_json_atomic(path, json_safe(value))


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
  return scratch_tokenizer(s), s.model, None


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
    done = fileio.read_json_if_exists(os.path.join(method_dir, "eval.json"))
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
  s = dataclasses.replace(s, wandb=s.wandb.in_study(workdir))  # W&B runs named by their path
  started = time.perf_counter()
  if jax.process_index() == 0:
    fileio.makedirs(workdir)
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
