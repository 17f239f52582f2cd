"""One self-rewarding round of the SCIR study: the per-seed context that builds trainers,
sampling, pairing and labelling with both reward models, and what each method trains on."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import fileio
from jaxlab.config import ConfigError
from jaxlab.data.letter_task import LetterTask
from jaxlab.data.preference_rounds import best_vs_worst, candidate_pairs, sample_responses
from jaxlab.data.preferences import PairEncoder, verdict_token_ids
from jaxlab.data.source import ArraySource
from jaxlab.data.tokenizers import Tokenizer
from jaxlab.eval.preferences import predict_pairs, reward_model_summary
from jaxlab.experiments.lm_pretrain import lm_init_variables
from jaxlab.experiments.scir_settings import SCIRStudySettings
from jaxlab.fileio import write_jsonl_atomic
from jaxlab.models.transformer import Transformer
from jaxlab.objectives.dpo import DPOObjective
from jaxlab.objectives.scir import SCIRObjective
from jaxlab.parallel.mesh import build_mesh, mesh_context
from jaxlab.train.metrics import json_safe
from jaxlab.train.optimizer import build_optimizer
from jaxlab.train.preemption import Preempted
from jaxlab.train.state import StartingWeights
from jaxlab.train.trainer import Program, Trainer, TrainerSettings

# ---------------------------------------------------------------------------------- training


@dataclasses.dataclass
class Context:
  """What every stage of one seed shares."""

  settings: SCIRStudySettings
  seed: int
  model: Transformer
  tokenizer: Tokenizer
  mesh: jax.sharding.Mesh
  verdict_ids: tuple[int, int]
  encoder: PairEncoder

  def trainer(
    self,
    workdir: str,
    objective: Any,
    arrays: dict[str, np.ndarray],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    start: StartingWeights | None = None,
    frozen_keys: Sequence[str] = (),
    log_every: int = 10,
  ) -> Trainer:
    s = self.settings
    tx, schedule = build_optimizer(
      dataclasses.replace(
        s.optimizer, lr=lr, warmup_steps=min(s.optimizer.warmup_steps, steps // 5)
      ),
      steps,
    )
    seq_len = next(v.shape[-1] for k, v in arrays.items() if k.endswith("inputs"))
    program = Program(
      objective=objective,
      init_variables=lm_init_variables(self.model, seq_len),
      tx=tx,
      schedule=schedule,
      init_frozen=lambda params: {key: params for key in frozen_keys},
      start=start,
    )
    spec = {
      k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], jnp.dtype(v.dtype))
      for k, v in arrays.items()
    }
    return Trainer(
      TrainerSettings(
        steps=steps,
        log_every=log_every,
        checkpoint_every=s.checkpoint.every,
        checkpoint_keep=s.checkpoint.keep,
        async_checkpoints=s.checkpoint.use_async,
        seed=self.seed,
        wandb=s.wandb,
      ),
      program,
      ArraySource(arrays, batch_size, self.seed),
      spec,
      mesh=self.mesh,
      rules=s.rules,
      workdir=workdir,
    )

  def train(self, workdir: str, *args: Any, **kwargs: Any) -> Any:
    """Runs (or resumes, or just reloads) a stage; returns its final parameters."""
    trainer = self.trainer(workdir, *args, **kwargs)
    summary = trainer.run()
    if summary.get("preempted"):
      raise Preempted()
    return trainer.latest_params()


def make_context(s: SCIRStudySettings, seed: int, model_cfg, tokenizer, devices=None) -> Context:
  verdict_ids = verdict_token_ids(tokenizer, s.judge.verdicts)
  return Context(
    settings=s,
    seed=seed,
    model=Transformer(model_cfg),
    tokenizer=tokenizer,
    mesh=build_mesh(s.mesh, devices),
    verdict_ids=verdict_ids,
    encoder=PairEncoder(tokenizer, s.rounds.seq_len, s.rounds.judge_len, s.judge_template()),
  )


def stage(message: str) -> None:
  print(f"[scir] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- rounds


@dataclasses.dataclass
class RoundData:
  """One round's prompts, samples and candidate pairs with their predictions and truth."""

  prompts: list[str]
  samples: list[list[str]]
  pairs: list[tuple[int, int, int]]
  p_implicit: np.ndarray
  p_judge: np.ndarray
  truth: np.ndarray | None  # +1: first better, -1: second better, 0: tie; None: unknown


def frozen_models(current: Any, label_reference: Any) -> dict[str, Any]:
  return {"reference": current, "label_reference": label_reference}


def predict(ctx: Context, current: Any, label_reference: Any, arrays) -> tuple[np.ndarray, ...]:
  return predict_pairs(
    ctx.model,
    current,
    frozen_models(current, label_reference),
    arrays,
    ctx.settings.scir,
    ctx.verdict_ids,
    batch_size=ctx.settings.rounds.batch_size,
    mesh=ctx.mesh,
    rules=ctx.settings.rules,
  )


def sample(ctx: Context, params: Any, prompts: list[str], rng: jax.Array) -> list[list[str]]:
  r = ctx.settings.rounds
  with mesh_context(ctx.mesh, ctx.settings.rules):
    return sample_responses(
      params,
      ctx.model.cfg,
      ctx.tokenizer,
      prompts,
      r.samples_per_prompt,
      rng,
      batch_size=r.sample_batch,
      max_new_tokens=r.max_new_tokens,
      temperature=r.temperature,
      top_p=r.top_p,
    )


def encode_pairs(ctx: Context, prompts, samples, pairs) -> tuple[dict[str, np.ndarray], np.ndarray]:
  triples = [(prompts[p], samples[p][i], samples[p][j]) for p, i, j in pairs]
  try:
    return ctx.encoder.encode(triples)
  except ValueError as e:
    raise ConfigError(f"{e}: raise rounds.seq_len / rounds.judge_len") from None


def pair_truth(task: LetterTask | None, prompts, samples, pairs) -> np.ndarray | None:
  if task is None:
    return None
  return np.array(
    [
      np.sign(task.score(prompts[p], samples[p][i]) - task.score(prompts[p], samples[p][j]))
      for p, i, j in pairs
    ]
  )


def label_round(
  ctx: Context, round_dir: str, task, prompts, current, label_reference, t: int
) -> RoundData:
  """Samples, pairs and labels one round, or reads them back from the round's JSONL files."""
  path = os.path.join(round_dir, "pairs.jsonl")
  if fileio.isfile(path):
    samples_text = fileio.read_text(os.path.join(round_dir, "samples.jsonl"))
    samples = [json.loads(line)["responses"] for line in samples_text.splitlines()]
    rows = [json.loads(line) for line in fileio.read_text(path).splitlines()]
    pairs = [(r["prompt_index"], r["first"], r["second"]) for r in rows]
    return RoundData(
      prompts,
      samples,
      pairs,
      np.array([r["p_implicit"] for r in rows]),
      np.array([r["p_judge"] for r in rows]),
      None if task is None else np.array([r["truth"] for r in rows]),
    )
  r = ctx.settings.rounds
  samples = sample(ctx, current, prompts, jax.random.fold_in(jax.random.PRNGKey(ctx.seed), t))
  candidates = candidate_pairs(samples, r.pairs_per_prompt, np.random.default_rng([ctx.seed, t]))
  arrays, kept = encode_pairs(ctx, prompts, samples, candidates)
  pairs = [candidates[k] for k in kept]
  p_implicit, p_judge = predict(ctx, current, label_reference, arrays)
  truth = pair_truth(task, prompts, samples, pairs)
  write_jsonl_atomic(os.path.join(round_dir, "prompts.jsonl"), [{"prompt": p} for p in prompts])
  write_jsonl_atomic(
    os.path.join(round_dir, "samples.jsonl"),
    [
      {"prompt": p, "responses": texts}
      | ({} if task is None else {"scores": [task.score(p, x) for x in texts]})
      for p, texts in zip(prompts, samples)
    ],
  )
  write_jsonl_atomic(
    path,
    [
      {
        "prompt_index": p,
        "first": i,
        "second": j,
        "p_implicit": float(pi),
        "p_judge": float(pg),
        "agree": bool((pi - 0.5) * (pg - 0.5) > 0),
      }
      | ({} if truth is None else {"truth": int(truth[k])})
      for k, ((p, i, j), pi, pg) in enumerate(zip(pairs, p_implicit, p_judge))
    ],
  )
  return RoundData(prompts, samples, pairs, p_implicit, p_judge, truth)


def method_data(ctx: Context, method: str, data: RoundData) -> tuple[dict, float]:
  """The training arrays a method uses in a round, and the share of candidate pairs it trains
  on (for SCIR: those selected when the round starts)."""
  if method == "scir":
    arrays, _ = encode_pairs(ctx, data.prompts, data.samples, data.pairs)
    margin = np.minimum(np.abs(data.p_implicit - 0.5), np.abs(data.p_judge - 0.5))
    agree = (data.p_implicit - 0.5) * (data.p_judge - 0.5) > 0
    return arrays, float(np.mean(agree & (margin >= ctx.settings.scir.tau)))
  if method == "self_rewarding":
    pairs = best_vs_worst(data.pairs, data.p_judge, len(data.prompts))
    arrays, _ = encode_pairs(ctx, data.prompts, data.samples, pairs)
    arrays["label"] = np.ones(len(arrays["pair_weight"]), np.float32)
    arrays["label_weight"] = np.ones(len(arrays["pair_weight"]), np.float32)
  else:  # gold_dpo
    arrays, _ = encode_pairs(ctx, data.prompts, data.samples, data.pairs)
    arrays["label"] = (data.truth > 0).astype(np.float32)
    arrays["label_weight"] = (data.truth != 0).astype(np.float32)
  share = float(np.sum(arrays["label_weight"]) / len(data.pairs))
  return {k: v for k, v in arrays.items() if not k.startswith("judge_")}, share


def fill_batch(arrays: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
  """Arrays with at least one batch of rows: fewer pairs than a batch are repeated cyclically
  (they keep their relative weight), so a round with few usable pairs still trains."""
  n = len(next(iter(arrays.values())))
  if n >= batch_size:
    return arrays
  return {k: np.resize(v, (batch_size,) + v.shape[1:]) for k, v in arrays.items()}


def method_objective(ctx: Context, method: str):
  if method == "scir":
    return SCIRObjective(ctx.model, ctx.settings.scir, ctx.verdict_ids)
  return DPOObjective(ctx.model, ctx.settings.scir.beta, ctx.settings.scir.nll_weight)


def round_summary(data: RoundData) -> dict[str, float]:
  """Both reward models on the round's own candidate pairs, when the round starts."""
  if data.truth is None:
    return reward_model_summary(data.p_implicit, data.p_judge)
  decided = data.truth != 0
  return reward_model_summary(
    data.p_implicit[decided], data.p_judge[decided], data.truth[decided] > 0
  )


def write_json(path: str, value: Any) -> None:
  fileio.write_json_atomic(path, json_safe(value))
