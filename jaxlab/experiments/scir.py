"""Experiment `scir`: self-rewarding preference optimization with SCIR and its baselines.

Per seed: a starting model (trained here on the synthetic letter task's demonstrations, or a
jaxlab LM run the user points to), then for each method T rounds of
  sample N responses per prompt with M_t -> form pairs -> label them with M_t's internal reward
  models -> train M_t -> M_{t+1} on the one Trainer -> evaluate M_{t+1}.
Methods: `scir` (SCIRObjective on all pairs), `self_rewarding` (judge-only best-vs-worst pairs,
DPO), `gold_dpo` (the same pairs as SCIR with true labels, DPO: the upper bound). The DPO
reference is the iteration's starting model M_t; the implicit reward used for labelling compares
against M_{t-1} (the pre-demonstration base model for t = 0; `scir.irm_reference`).

Every round writes prompts.jsonl, samples.jsonl and pairs.jsonl (with both reward models'
predictions and, where known, the truth) to `seed_S/METHOD/iter_T/`; its trainer checkpoints in
`train/`, and `eval.json` marks it done, so a preempted study resumes inside the right round.
Pieces: `scir_settings` (the config sections), `scir_rounds` (one round: sample, pair, label,
train), `scir_letters` (the synthetic task's starting models and held-out evaluation).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.config import ConfigError, write_config
from jaxlab.data.letter_task import LetterTask
from jaxlab.data.preferences import check_judge_template, verdict_token_ids
from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.eval.preferences import aggregate, write_report
from jaxlab.eval.run_loading import load_run
from jaxlab.experiments.lm_pretrain import lm_init_variables
from jaxlab.experiments.scir_letters import eval_set, evaluate_model, starting_models
from jaxlab.experiments.scir_rounds import (
  Context,
  fill_batch,
  frozen_models,
  label_round,
  make_context,
  method_data,
  method_objective,
  round_summary,
  stage,
  write_json,
)
from jaxlab.experiments.scir_settings import METHODS, SCIRStudySettings
from jaxlab.models.transformer import Transformer
from jaxlab.objectives.scir import SCIRObjective
from jaxlab.parallel.mesh import build_mesh
from jaxlab.parallel.topology import fit_report, topology_devices
from jaxlab.progress import Progress
from jaxlab.smi.triples import json_lines
from jaxlab.train.optimizer import build_optimizer
from jaxlab.train.preemption import Preempted
from jaxlab.train.state import StartingWeights
from jaxlab.train.trainer import Program, Trainer, TrainerSettings

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config and the files it names; raises ConfigError (one line)."""
  try:
    s = SCIRStudySettings.from_config(config)
    s.model.validate()
    s.scir.validate()
    s.optimizer.validate()
    s.checkpoint.validate()
    s.wandb.validate()
  except ValueError as e:
    raise ConfigError(str(e)) from None
  unknown = [m for m in s.methods if m not in METHODS]
  if unknown or not s.methods:
    raise ConfigError(
      f"methods must be a non-empty subset of {', '.join(METHODS)}, got {s.methods}"
    )
  if not s.seeds:
    raise ConfigError("seeds: the study needs at least one seed")
  r = s.rounds
  for name in ("iterations", "samples_per_prompt", "pairs_per_prompt", "steps", "batch_size"):
    if getattr(r, name) < 1:
      raise ConfigError(f"rounds.{name} must be at least 1, got {getattr(r, name)}")
  if r.samples_per_prompt < 2:
    raise ConfigError("rounds.samples_per_prompt must be at least 2 to form pairs")
  if s.task.kind not in ("letters", "prompts_file"):
    raise ConfigError(f"task.kind must be letters or prompts_file, got {s.task.kind!r}")
  if dry_run:
    return
  try:
    check_judge_template(s.judge_template())
  except OSError as e:
    raise ConfigError(f"judge.template_file: {e.strerror}: {s.judge.template_file}") from None
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if s.task.kind == "prompts_file":
    _validate_real_use(s)
  else:
    try:
      verdict_token_ids(ByteTokenizer(), s.judge.verdicts)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if s.model.vocab_size < ByteTokenizer.vocab_size:
      raise ConfigError(
        f"model.vocab_size={s.model.vocab_size} is smaller than the byte tokenizer's "
        f"{ByteTokenizer.vocab_size} tokens"
      )


def _validate_real_use(s: SCIRStudySettings) -> None:
  if "gold_dpo" in s.methods:
    raise ConfigError("gold_dpo needs true labels, which only task.kind=letters has")
  if not s.start.run:
    raise ConfigError("task.kind=prompts_file needs start.run: the LM run to start from")
  if s.scir.irm_reference == "previous" and not s.start.label_reference_run:
    raise ConfigError(
      "scir.irm_reference=previous needs start.label_reference_run (e.g. the run before SFT) "
      "for the first round; or set scir.irm_reference=iteration_start"
    )
  for path in (s.start.run, s.start.label_reference_run):
    if path and not fileio.isfile(os.path.join(path, "config.json")):
      raise ConfigError(f"{path} is not a jaxlab run: no config.json")
  _read_prompts(s.task.prompts_file)


def _read_prompts(path: str) -> list[str]:
  """Prompts from JSONL lines {"prompt": "..."} (read by the project's JSON Lines reader);
  raises ConfigError naming the bad line."""
  try:
    with fileio.open_file(path, "rb") as f:
      rows = list(json_lines(f))
  except OSError as e:
    raise ConfigError(f"task.prompts_file: {e.strerror}: {path}") from None
  prompts = []
  for number, record in rows:
    if isinstance(record, ValueError):
      raise ConfigError(f"{path}:{number}: {record}")
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
      raise ConfigError(f'{path}:{number}: expected an object with a string "prompt"')
    prompts.append(record["prompt"])
  if not prompts:
    raise ConfigError(f"{path}: no prompts")
  return prompts


# ---------------------------------------------------------------------------------- the study


def _run_method(
  ctx: Context, method: str, seed_dir: str, task, prompts, evals, base, start, start_row, progress
) -> list[dict[str, Any]]:
  """T rounds of one method from the starting model; per-model rows M_0..M_T."""
  s = ctx.settings
  rows = [dict(start_row)]
  previous, current = base, start
  for t in range(s.rounds.iterations):
    round_dir = os.path.join(seed_dir, method, f"iter_{t}")
    done = fileio.read_json_if_exists(os.path.join(round_dir, "eval.json"))
    data = label_round(ctx, round_dir, task, prompts, current, previous, t)
    arrays, share = method_data(ctx, method, data)
    two_references = method == "scir" and s.scir.irm_reference == "previous"
    frozen = frozen_models(current, previous) if two_references else {"reference": current}
    if done is None:
      stage(f"seed {ctx.seed} {method} round {t}: {len(arrays['pair_weight'])} training pairs")
    if len(arrays["pair_weight"]):
      trained = ctx.train(
        os.path.join(round_dir, "train"),
        method_objective(ctx, method),
        fill_batch(arrays, s.rounds.batch_size),
        steps=s.rounds.steps,
        batch_size=s.rounds.batch_size,
        lr=s.rounds.lr,
        start=StartingWeights(params=current, frozen=frozen),
        frozen_keys=tuple(frozen),
        log_every=s.rounds.log_every,
      )
    else:  # nothing to learn from: the model carries over unchanged
      trained = current
    if done is None:
      done = {"round": {"selected": share, **round_summary(data)}}
      if evals is not None:
        done["model"] = evaluate_model(ctx, task, evals, trained, current)
      write_json(os.path.join(round_dir, "eval.json"), done)
    rows[t].update(selected=done["round"]["selected"], round_agreement=done["round"]["agreement"])
    rows.append(dict(done.get("model", {})))
    previous, current = current, trained
    progress.tick()
  return rows


class RoundProgress:
  """Study-level progress in rounds (each round's trainer shows its own steps)."""

  def __init__(self, total: int):
    self.done = 0
    self.progress = Progress(total, label="scir rounds", unit="round")

  def tick(self) -> None:
    self.done += 1
    self.progress.update(self.done)

  def close(self) -> None:
    self.progress.close()


def _run_seed(s: SCIRStudySettings, seed: int, workdir: str, progress) -> dict[str, list]:
  seed_dir = os.path.join(workdir, f"seed_{seed}")
  if s.task.kind == "letters":
    tokenizer = ByteTokenizer()
    ctx = make_context(s, seed, s.model, tokenizer)
    task = LetterTask(s.task.alphabet, s.task.length)
    base, start = starting_models(ctx, seed_dir, task)
    evals = eval_set(ctx, task)
    start_row = evaluate_model(ctx, task, evals, start, base)
    prompts = task.prompts(s.task.train_prompts, np.random.default_rng([seed, 3]))
  else:
    run = load_run(s.start.run)
    ctx = make_context(s, seed, run.model_cfg, run.tokenizer)
    task, evals, start_row, start = None, None, {}, run.params
    base = load_run(s.start.label_reference_run).params if s.start.label_reference_run else start
    prompts = _read_prompts(s.task.prompts_file)
  return {
    method: _run_method(
      ctx, method, seed_dir, task, prompts, evals, base, start, start_row, progress
    )
    for method in s.methods
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the whole study; writes results.json, report.md and curves.png."""
  s = SCIRStudySettings.from_config(config)
  s = dataclasses.replace(s, wandb=s.wandb.in_study(workdir))  # W&B runs named by their path
  started = time.perf_counter()
  if jax.process_index() == 0:
    write_config(config, workdir)
  rounds = len(s.seeds) * len(s.methods) * s.rounds.iterations
  progress = RoundProgress(rounds)
  results: dict[str, dict[str, list]] = {m: {} for m in s.methods}
  try:
    for seed in s.seeds:
      for method, rows in _run_seed(s, seed, workdir, progress).items():
        results[method][str(seed)] = rows
  except Preempted:
    stage("stopped on a signal; run the same command again to resume")
    progress.close()
    return {"preempted": True}
  progress.close()
  table = aggregate(results)
  summary = {
    "results": results,
    "table": table,
    "seeds": list(s.seeds),
    "wall_time_s": time.perf_counter() - started,
  }
  write_json(os.path.join(workdir, "results.json"), summary)
  if s.task.kind == "letters":
    n = s.task.eval_prompts * s.rounds.samples_per_prompt
    teacher = [rows[0]["teacher_accuracy"] for rows in results[s.methods[0]].values()]
    write_report(
      table,
      f"# SCIR study: {len(s.seeds)} seeds, {n} held-out samples per model, "
      f"{s.task.eval_pairs} held-out pairs; mean +- std over seeds\n\n"
      f"For reference, the judge the demonstrations came from (noiseless, reading "
      f"{s.start.judge_horizon or 'all'} letters, coin flips on its ties) is right on "
      f"{np.mean(teacher):.3f} of the held-out pairs; a perfect reward model scores 1.0 and the "
      f"best policy {s.task.length}.",
      workdir,
    )
  stage(f"done in {summary['wall_time_s']:.0f}s: {os.path.join(workdir, 'results.json')}")
  return {"table": table, "wall_time_s": summary["wall_time_s"]}


# ---------------------------------------------------------------------------------- dry run


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles the SCIR step (policy + frozen reference + label reference) ahead of time for
  `config.topology`'s slice (or the local devices) and writes dry_run.json."""
  s = SCIRStudySettings.from_config(config)
  devices = topology_devices(s.topology) if s.topology else None
  r = s.rounds
  mesh = build_mesh(s.mesh, devices)
  model = Transformer(s.model)
  verdicts = (0, 1)  # any two ids: the compiled program does not depend on which
  objective = SCIRObjective(model, s.scir, verdicts)
  frozen_keys = (
    ("reference", "label_reference") if s.scir.irm_reference == "previous" else ("reference",)
  )
  tx, schedule = build_optimizer(s.optimizer, r.steps)
  program = Program(
    objective=objective,
    init_variables=lm_init_variables(model, r.seq_len),
    tx=tx,
    schedule=schedule,
    init_frozen=lambda params: {key: params for key in frozen_keys},
  )
  b = r.batch_size
  spec = {f"pair_{k}": jax.ShapeDtypeStruct((b, 2, r.seq_len), jnp.int32) for k in PAIR_INT}
  spec["pair_loss_weights"] = jax.ShapeDtypeStruct((b, 2, r.seq_len), jnp.float32)
  spec.update(
    {f"judge_{k}": jax.ShapeDtypeStruct((b, 2, r.judge_len), jnp.int32) for k in JUDGE_INT}
  )
  spec["pair_weight"] = jax.ShapeDtypeStruct((b,), jnp.float32)
  trainer = Trainer(
    TrainerSettings(steps=r.steps), program, None, spec, mesh=mesh, rules=s.rules, workdir=workdir
  )
  started = time.perf_counter()
  trainer.compile()
  result: dict[str, Any] = {
    "params": trainer.num_params(),
    "frozen_models": len(frozen_keys),
    "bytes_per_device": trainer.bytes_per_device,
    "mesh": dict(zip(mesh.axis_names, (int(x) for x in mesh.devices.shape))),
    "num_devices": int(mesh.devices.size),
    "device_kind": mesh.devices.flat[0].device_kind,
    "pairs_per_step": b,
    "seq_len": r.seq_len,
    "judge_len": r.judge_len,
    "compile_s": round(time.perf_counter() - started, 2),
  }
  result.update(fit_report(result["bytes_per_device"], s.topology))
  write_json(os.path.join(workdir, "dry_run.json"), result)
  logger.info("dry run: %s", result)
  return result


PAIR_INT = ("inputs", "targets", "segment_ids", "positions")
JUDGE_INT = ("inputs", "segment_ids", "positions")
