"""Experiment `smi_scaling`: the SMI study end to end on a synthetic knowledge corpus.

Stages (each skipped when its output already exists, so an interrupted study resumes):
corpus -> counts -> per model size and seed: pretrain, CBQA -> per size: seed-averaged accuracy
per fact and R^2 of every predictor with bootstrap intervals -> a pooled fit over sizes ->
summary.json, smi_scaling.png, report.md.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.config import ConfigError
from jaxlab.data.tokenizers import ByteTokenizer, WordTokenizer
from jaxlab.eval.run_loading import load_run
from jaxlab.experiments import lm_pretrain
from jaxlab.fileio import write_jsonl_atomic
from jaxlab.models.transformer import count_params
from jaxlab.smi import corpus_gen, report, study_stats
from jaxlab.smi.cbqa import cbqa_accuracy, merge_counts
from jaxlab.smi.count import count_triples
from jaxlab.smi.triples import load_templates, load_triples
from jaxlab.train.preemption import Preempted
from jaxlab.train.wandb_config import name_in_study


def corpus_spec(config: ml_collections.ConfigDict) -> corpus_gen.CorpusSpec:
  """The generator's spec from the config's `corpus` section (eval_docs aside)."""
  fields = {k: v for k, v in config.corpus.to_dict().items() if k != "eval_docs"}
  return corpus_gen.CorpusSpec(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  )


def size_config(
  config: ml_collections.ConfigDict, size: str, seed: int, data_dir: str, vocab: int
) -> ml_collections.ConfigDict:
  """The pretraining config of one model size and seed: the shared base plus that size's shape
  (and its peak rate in `lr_by_size`, when listed), reading the corpus with its word tokenizer
  (of `vocab` tokens)."""
  run = copy.deepcopy(config.base)
  run.seed = seed
  run.model.update(config.sizes[size].to_dict())
  run.model.vocab_size = vocab
  if size in config.get("lr_by_size", {}):
    run.optimizer.lr = config.lr_by_size[size]
  if "logging" in config:  # the study's W&B settings hold for every run
    run.logging = copy.deepcopy(config.logging)
  run.data.update(
    kind="jsonl",
    train_files=os.path.join(data_dir, "corpus.jsonl"),
    eval_files=os.path.join(data_dir, "eval_corpus.jsonl"),
  )
  # A prompt's first word (the subject) must be the token the documents use mid-text.
  run.data.tokenizer.update(
    kind="words", path=os.path.join(data_dir, "words.txt"), dummy_prefix=True
  )
  return run


def _without_corpus(
  config: ml_collections.ConfigDict, size: str, vocab: int
) -> ml_collections.ConfigDict:
  """A size's config for checks and compiles before the corpus exists: synthetic data and the
  byte tokenizer stand in for the files, the vocabulary keeps the corpus's size."""
  sized = size_config(config, size, config.seeds[0], "/nonexistent", vocab)
  sized.data.update(kind="synthetic")
  sized.data.tokenizer.update(kind="byte", path="")
  return sized


def _planned_vocab(config: ml_collections.ConfigDict) -> int:
  """The word tokenizer's size, from generating the corpus in memory (a second or so)."""
  return WordTokenizer(corpus_gen.vocabulary(corpus_gen.generate(corpus_spec(config)))).vocab_size


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  if not len(config.sizes):
    raise ConfigError("sizes: the study needs at least one model size")
  if not len(config.seeds):
    raise ConfigError("seeds: the study needs at least one seed")
  if config.fit_variant not in ("latest", "v1"):
    raise ConfigError(f"fit_variant must be latest or v1, got {config.fit_variant!r}")
  unknown = sorted(set(config.get("lr_by_size", {})) - set(config.sizes))
  if unknown:
    raise ConfigError(f"lr_by_size: no such size(s): {', '.join(unknown)}")
  if config.bootstrap.resamples < 1:
    raise ConfigError(f"bootstrap.resamples must be positive, got {config.bootstrap.resamples}")
  try:
    corpus_gen.check_spec(corpus_spec(config))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"corpus: {e}") from None
  for size in config.sizes:
    try:
      lm_pretrain.validate(_without_corpus(config, size, ByteTokenizer.vocab_size), dry_run=dry_run)
    except ConfigError as e:
      raise ConfigError(f"size {size}: {e}") from None


def _stage(message: str) -> None:
  print(f"[smi_scaling] {message}", file=sys.stderr, flush=True)


def _corpus(config: ml_collections.ConfigDict, data_dir: str) -> None:
  if fileio.exists(os.path.join(data_dir, "templates.json")):
    return
  spec = corpus_spec(config)
  _stage(f"generating documents stating {spec.num_facts} facts")
  corpus_gen.write_corpus(spec, data_dir, eval_docs=config.corpus.eval_docs)


def _counts(config: ml_collections.ConfigDict, data_dir: str) -> str:
  path = os.path.join(data_dir, "counts.jsonl")
  if not fileio.exists(path):
    _stage("counting subject/object/co-occurrence documents (Aho-Corasick)")
    triples, _ = load_triples(os.path.join(data_dir, "triples.jsonl"))
    rows = count_triples(
      triples, [os.path.join(data_dir, "corpus.jsonl")], workers=int(config.count_workers)
    )
    write_jsonl_atomic(path, rows)
  return path


def _read_jsonl(path: str) -> list[dict]:
  with fileio.open_file(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _train_and_ask(
  config, size: str, seed: int, workdir: str, data_dir: str, vocab: int
) -> tuple[dict[str, Any], bool]:
  """One model: pretraining, then CBQA accuracy per fact (cached in the run's cbqa.json).
  Returns the result and whether it was found finished."""
  run_dir = os.path.join(workdir, "models", size, f"seed{seed}")
  result_path = os.path.join(run_dir, "cbqa.json")
  if fileio.exists(result_path):
    return fileio.read_json(result_path), True
  run_config = size_config(config, size, seed, data_dir, vocab)
  if "logging" in run_config:  # W&B: the runs are named by their path in the study
    name_in_study(run_config.logging.wandb, workdir, run_dir)
  _stage(f"size {size} seed {seed}: pretraining {dict(config.sizes[size])}")
  started = time.perf_counter()
  summary = lm_pretrain.run(run_config, run_dir)
  if summary["step"] < summary["total_steps"]:  # stopped by a signal: no CBQA on a partial model
    raise Preempted()
  _stage(f"size {size} seed {seed}: closed-book QA")
  run = load_run(run_dir)
  triples, _ = load_triples(os.path.join(data_dir, "triples.jsonl"))
  cbqa = config.cbqa
  accuracies = cbqa_accuracy(
    run,
    triples,
    load_templates(os.path.join(data_dir, "templates.json")),
    templates_per_relation=cbqa.templates_per_relation,
    samples=cbqa.samples,
    temperature=cbqa.temperature,
    top_p=cbqa.top_p,
    max_new_tokens=cbqa.max_new_tokens,
    batch_size=cbqa.batch_size,
    seed=seed,
  )
  result = {
    "size": size,
    "seed": seed,
    "params": count_params(run.params),
    "loss": summary.get("loss"),
    "eval_loss": summary.get("eval_loss"),
    "accuracies": [float(a) for a in accuracies],
    "wall_time_s": time.perf_counter() - started,
  }
  fileio.write_json_atomic(result_path, result)
  return result, False


def _size_records(triples, runs: list[dict], counts_path: str, factors: list[dict]) -> list[dict]:
  """Per fact: counts, factors and the accuracy averaged over the size's seeds."""
  accuracy = np.mean([r["accuracies"] for r in runs], axis=0)
  records = merge_counts(triples, accuracy, counts_path)
  for record, row in zip(records, factors, strict=True):
    record.update({k: row[k] for k in corpus_gen.FACTOR_FIELDS})
  return records


def accuracy_by_true_docs(records: list[dict]) -> dict[str, float]:
  """Mean accuracy of the facts in each octave of true_docs ("1", "2-3", "4-7", ...): how far
  recall spans from facts stated once to facts stated most."""
  octaves: dict[int, list[float]] = {}
  for record in records:
    octaves.setdefault(int(record["true_docs"]).bit_length() - 1, []).append(record["acc"])
  return {
    (f"{2**k}" if k == 0 else f"{2**k}-{2 ** (k + 1) - 1}"): float(np.mean(octaves[k]))
    for k in sorted(octaves)
  }


def factor_correlations(factors: list[dict]) -> dict[str, dict[str, float]]:
  """Pearson correlations between the factors' log2(1 + value) over the facts."""
  logs = np.log2(1 + np.array([[f[k] for k in corpus_gen.FACTOR_FIELDS] for f in factors], float))
  matrix = np.corrcoef(logs.T)
  names = corpus_gen.FACTOR_FIELDS
  return {a: {b: float(matrix[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}


class _Eta:
  """Study-level ETA over the training runs, weighting each run by its size's step cost; runs a
  resumed study found finished count as done but not towards the rate."""

  def __init__(self, weights: list[float]):
    self.weights, self.done, self.timed = weights, 0, 0.0
    self.started = time.perf_counter()

  def finished_one(self, label: str, cached: bool = False) -> str:
    """Reports one more run done; returns the line it printed."""
    if cached:
      if not self.timed:  # the clock starts at the first run trained here
        self.started = time.perf_counter()
    else:
      self.timed += self.weights[self.done]
    self.done += 1
    elapsed = time.perf_counter() - self.started
    left = sum(self.weights[self.done :]) / self.timed * elapsed if self.timed else None
    line = (
      f"{self.done}/{len(self.weights)} models done ({label}); elapsed "
      f"{datetime.timedelta(seconds=round(elapsed))}, eta "
      + ("?" if left is None else str(datetime.timedelta(seconds=round(left))))
    )
    _stage(line)
    return line


def _step_cost(shape: ml_collections.ConfigDict, vocab: int) -> float:
  """A model's parameters (the output projection included) plus a fixed per-step overhead,
  in parameter units: what one training step costs, roughly."""
  d, layers = shape.d_model, shape.n_layers
  return vocab * d + layers * (4 * d * d + 3 * d * shape.d_ff) + 2e5


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  started = time.perf_counter()
  data_dir = os.path.join(workdir, "data")
  _corpus(config, data_dir)
  counts_path = _counts(config, data_dir)
  vocab = WordTokenizer.from_file(os.path.join(data_dir, "words.txt")).vocab_size
  triples, _ = load_triples(os.path.join(data_dir, "triples.jsonl"))
  factors = _read_jsonl(os.path.join(data_dir, "factors.jsonl"))
  sizes = sorted(config.sizes, key=lambda size: _step_cost(config.sizes[size], vocab))
  plan = [(size, seed) for size in sizes for seed in config.seeds]
  eta = _Eta([_step_cost(config.sizes[size], vocab) for size, _ in plan])
  runs: dict[str, list[dict]] = {}
  for size, seed in plan:
    try:
      result, cached = _train_and_ask(config, size, seed, workdir, data_dir, vocab)
    except Preempted:
      _stage("stopped on a signal; run the same command again to resume")
      return {"preempted": True}
    runs.setdefault(size, []).append(result)
    eta.finished_one(f"size {size} seed {seed}", cached=cached)
  _stage(f"bootstrap intervals ({config.bootstrap.resamples} resamples of the facts)")
  records = {}
  for size in sizes:
    records[size] = _size_records(triples, runs[size], counts_path, factors)
    write_jsonl_atomic(os.path.join(workdir, "models", size, "records.jsonl"), records[size])
  variant, boot = config.fit_variant, config.bootstrap
  summary_sizes = {}
  for size in sizes:
    seed_acc = [float(np.mean(r["accuracies"])) for r in runs[size]]
    stats = study_stats.size_r2(
      records[size], runs[size][0]["params"], variant, resamples=boot.resamples, seed=boot.seed
    )
    summary_sizes[size] = {
      "params": runs[size][0]["params"],
      "seeds": [r["seed"] for r in runs[size]],
      "mean_acc": float(np.mean(seed_acc)),
      "mean_acc_std": float(np.std(seed_acc)),
      "mean_acc_per_seed": seed_acc,
      "loss": float(np.mean([r["loss"] for r in runs[size]])),
      "eval_loss": float(np.mean([r["eval_loss"] for r in runs[size]])),
      "train_time_s": float(np.mean([r["wall_time_s"] for r in runs[size]])),
      "acc_by_true_docs": accuracy_by_true_docs(records[size]),
      **stats,
    }
  pooled = study_stats.pooled_r2(
    [records[s] for s in sizes],
    [runs[s][0]["params"] for s in sizes],
    variant,
    resamples=boot.resamples,
    seed=boot.seed,
  )
  summary = {
    "sizes": summary_sizes,
    "pooled": pooled,
    "predictors": list(study_stats.PREDICTORS),
    "n_facts": len(triples),
    "factor_correlations": factor_correlations(factors),
    "wall_time_s": time.perf_counter() - started,
  }
  fileio.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  report.write_figure(summary, workdir)
  report.write_markdown(summary, os.path.join(workdir, "report.md"))
  _stage(f"done in {summary['wall_time_s']:.0f}s: {os.path.join(workdir, 'report.md')}")
  return summary


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles every size's train step abstractly (the corpus is generated in memory only, for
  the vocabulary size)."""
  vocab = _planned_vocab(config)
  results = {}
  for size in config.sizes:
    fileio.makedirs(os.path.join(workdir, size))
    results[size] = lm_pretrain.dry_run(
      _without_corpus(config, size, vocab), os.path.join(workdir, size)
    )
  fileio.write_json_atomic(os.path.join(workdir, "dry_run.json"), results)
  return results
