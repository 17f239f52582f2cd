"""Experiment `smi_scaling`: the SMI study end to end on a synthetic knowledge corpus.

Stages (each skipped when its output already exists, so an interrupted study resumes):
corpus -> counts -> per model size: pretrain, CBQA, fit -> summary.json, figure, report.md.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.config import ConfigError
from jaxlab.eval.run_loading import load_run
from jaxlab.experiments import lm_pretrain
from jaxlab.fileio import write_jsonl_atomic
from jaxlab.models.transformer import count_params
from jaxlab.smi import corpus_gen, report
from jaxlab.smi.cbqa import cbqa_accuracy, merge_counts
from jaxlab.smi.count import count_triples
from jaxlab.smi.fit import fit_records
from jaxlab.smi.triples import load_templates, load_triples
from jaxlab.train.wandb_config import name_in_study

METHODS = ("CO-OCCUR", "MI", "SMI")


def size_config(
  config: ml_collections.ConfigDict, size: str, data_dir: str
) -> ml_collections.ConfigDict:
  """The pretraining config of one model size: the shared base plus that size's shape."""
  run = copy.deepcopy(config.base)
  run.seed = config.seed
  run.model.update(config.sizes[size].to_dict())
  if "logging" in config:  # the study's W&B settings hold for every size
    run.logging = copy.deepcopy(config.logging)
  run.data.update(
    kind="jsonl",
    train_files=os.path.join(data_dir, "corpus.jsonl"),
    eval_files=os.path.join(data_dir, "eval_corpus.jsonl"),
  )
  return run


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  if not len(config.sizes):
    raise ConfigError("sizes: the study needs at least one model size")
  if config.fit_variant not in ("latest", "v1"):
    raise ConfigError(f"fit_variant must be latest or v1, got {config.fit_variant!r}")
  if config.corpus.num_relations > len(corpus_gen.RELATIONS):
    raise ConfigError(
      f"corpus.num_relations={config.corpus.num_relations} exceeds the "
      f"{len(corpus_gen.RELATIONS)} relations the generator has"
    )
  for size in config.sizes:
    sized = size_config(config, size, "/nonexistent")
    sized.data.update(kind="synthetic")  # the corpus does not exist yet; check everything else
    try:
      lm_pretrain.validate(sized, dry_run=dry_run)
    except ConfigError as e:
      raise ConfigError(f"size {size}: {e}") from None


def _stage(message: str) -> None:
  print(f"[smi_scaling] {message}", file=sys.stderr, flush=True)


def _corpus(config: ml_collections.ConfigDict, data_dir: str) -> None:
  if fileio.exists(os.path.join(data_dir, "templates.json")):
    return
  corpus = config.corpus
  spec = corpus_gen.CorpusSpec(
    num_facts=corpus.num_facts,
    num_relations=corpus.num_relations,
    num_docs=corpus.num_docs,
    log2_fact_docs=tuple(corpus.log2_fact_docs),
    log2_noise_docs=tuple(corpus.log2_noise_docs),
    seed=corpus.seed,
  )
  _stage(f"generating {spec.num_docs} documents stating {spec.num_facts} facts")
  # Held-out documents for eval loss: same generator, other names (a different seed).
  eval_docs, _, _ = corpus_gen.generate(
    corpus_gen.CorpusSpec(
      num_facts=spec.num_facts,
      num_relations=spec.num_relations,
      num_docs=corpus.eval_docs,
      seed=spec.seed + 1,
    )
  )
  write_jsonl_atomic(os.path.join(data_dir, "eval_corpus.jsonl"), [{"text": d} for d in eval_docs])
  corpus_gen.write_corpus(spec, data_dir)


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


def _size_result(
  config, size: str, workdir: str, data_dir: str, counts_path: str
) -> dict[str, Any]:
  run_dir = os.path.join(workdir, "models", size)
  result_path = os.path.join(run_dir, "fit.json")
  if fileio.exists(result_path):
    return fileio.read_json(result_path)
  run_config = size_config(config, size, data_dir)
  if "logging" in run_config:  # W&B: the sizes' runs are named by their path in the study
    name_in_study(run_config.logging.wandb, workdir, run_dir)
  _stage(f"size {size}: pretraining {dict(config.sizes[size])}")
  summary = lm_pretrain.run(run_config, run_dir)
  _stage(f"size {size}: closed-book QA")
  run = load_run(run_dir)
  triples, _ = load_triples(os.path.join(data_dir, "triples.jsonl"))
  templates = load_templates(os.path.join(data_dir, "templates.json"))
  cbqa = config.cbqa
  accuracies = cbqa_accuracy(
    run,
    triples,
    templates,
    templates_per_relation=cbqa.templates_per_relation,
    samples=cbqa.samples,
    temperature=cbqa.temperature,
    top_p=cbqa.top_p,
    max_new_tokens=cbqa.max_new_tokens,
    batch_size=cbqa.batch_size,
    seed=config.seed,
  )
  records = merge_counts(triples, accuracies, counts_path)
  write_jsonl_atomic(os.path.join(run_dir, "records.jsonl"), records)
  params = count_params(run.params)
  fit = fit_records(records, params=params, variant=config.fit_variant)
  result = {
    "size": size,
    "params": params,
    "loss": summary.get("loss"),
    "eval_loss": summary.get("eval_loss"),
    "mean_acc": float(np.mean(accuracies)),
    "fit": fit,
  }
  fileio.write_json_atomic(result_path, result)
  return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  started = time.perf_counter()
  data_dir = os.path.join(workdir, "data")
  _corpus(config, data_dir)
  counts_path = _counts(config, data_dir)
  results = [_size_result(config, size, workdir, data_dir, counts_path) for size in config.sizes]
  results.sort(key=lambda r: r["params"])
  summary = {
    "sizes": {
      r["size"]: {
        "params": r["params"],
        "loss": r["loss"],
        "eval_loss": r["eval_loss"],
        "mean_acc": r["mean_acc"],
        "n_triples": r["fit"]["n_triples"],
        "n_dropped": r["fit"]["n_dropped"],
        "r2": {m: r["fit"]["methods"][m]["r2"] for m in METHODS},
      }
      for r in results
    },
    "wall_time_s": time.perf_counter() - started,
  }
  fileio.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  report.write_figure(results, workdir, config.fit_variant)
  report.write_markdown(summary, os.path.join(workdir, "report.md"))
  _stage(f"done in {summary['wall_time_s']:.0f}s: {os.path.join(workdir, 'report.md')}")
  return summary


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles every size's train step abstractly (the corpus is not generated)."""
  results = {}
  for size in config.sizes:
    sized = size_config(config, size, "/nonexistent")
    fileio.makedirs(os.path.join(workdir, size))
    results[size] = lm_pretrain.dry_run(sized, os.path.join(workdir, size))
  fileio.write_json_atomic(os.path.join(workdir, "dry_run.json"), results)
  return results
