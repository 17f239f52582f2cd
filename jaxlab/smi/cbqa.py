"""Closed-book QA accuracy per fact (docs/smi.md section 5) with the shared KV-cache sampler.

Every (triple, template) prompt is sampled `samples` times; a generation is correct when it
contains the object string. Prompts are batched across triples in fixed-size, left-padded
batches sharded over the run's mesh, so one compiled sampler serves the whole evaluation and the
same command runs on a pod.

  python -m jaxlab.smi.cbqa --workdir RUN --triples T --templates TPL --out records.jsonl \
      [--counts counts.jsonl] [--templates_per_relation 20 --samples 20 --temperature 0.7]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxlab import fileio
from jaxlab.cli import OneLineParser, exit_cleanly_on_interrupt, fail
from jaxlab.data.global_batch import to_global_batch
from jaxlab.eval.run_loading import LoadedRun, load_run
from jaxlab.fileio import write_jsonl_atomic
from jaxlab.progress import Progress
from jaxlab.sampling import left_pad, padded_length, sample
from jaxlab.smi.triples import Triple, fill_template, json_lines, load_templates, load_triples


def build_prompts(
  triples: Sequence[Triple], templates: dict[str, list[str]], templates_per_relation: int
) -> list[tuple[int, str]]:
  """(triple index, prompt text) for the first `templates_per_relation` templates of each
  relation."""
  missing = sorted({t.rel for t in triples} - set(templates))
  if missing:
    raise ValueError(f"no templates for relation(s): {', '.join(missing)}")
  return [
    (i, fill_template(template, triple.subj))
    for i, triple in enumerate(triples)
    for template in templates[triple.rel][:templates_per_relation]
  ]


def _process_rows(batch_size: int) -> slice:
  """This process's contiguous block of a global batch (what
  make_array_from_process_local_data wants)."""
  per_process = batch_size // jax.process_count()
  return slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


def cbqa_accuracy(
  run: LoadedRun,
  triples: Sequence[Triple],
  templates: dict[str, list[str]],
  *,
  templates_per_relation: int = 20,
  samples: int = 20,
  temperature: float = 0.7,
  top_p: float = 1.0,
  max_new_tokens: int = 32,
  batch_size: int = 512,
  seed: int = 0,
  progress: bool = True,
) -> list[float]:
  """Fraction of correct generations per triple (over its templates x samples)."""
  tokenizer = run.tokenizer
  prompts = build_prompts(triples, templates, templates_per_relation)
  rows = [(triple_index, text) for triple_index, text in prompts for _ in range(samples)]
  encoded = {text: [tokenizer.bos_id] + tokenizer.encode(text) for _, text in prompts}
  prompt_length = padded_length(encoded.values(), 8)
  shards = run.mesh.shape["data"] * run.mesh.shape["fsdp"]
  batch_size = shards * math.ceil(min(batch_size, len(rows)) / shards)
  correct = np.zeros(len(triples))
  total = np.zeros(len(triples))
  rng = jax.random.PRNGKey(seed)
  num_batches = math.ceil(len(rows) / batch_size)
  display = Progress(len(rows), label="cbqa", unit="generation", enabled=progress)
  with run.context():
    for b in range(num_batches):
      chunk = rows[b * batch_size : (b + 1) * batch_size]
      padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # fixed shape: one compilation
      tokens, mask = left_pad(
        [encoded[text] for _, text in padded], tokenizer.pad_id, prompt_length
      )
      local = _process_rows(batch_size)
      batch = to_global_batch({"tokens": tokens[local], "mask": mask[local]}, run.batch_sharding)
      out = sample(
        run.params,
        run.model_cfg,
        batch["tokens"],
        batch["mask"],
        jax.random.fold_in(rng, b),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
      )
      generated = np.asarray(multihost_utils.process_allgather(out.tokens, tiled=True))
      lengths = np.asarray(multihost_utils.process_allgather(out.lengths, tiled=True))
      for (triple_index, _), row, length in zip(chunk, generated, lengths):
        text = tokenizer.decode(row[:length].tolist())
        correct[triple_index] += triples[triple_index].obj in text
        total[triple_index] += 1
      display.update(min((b + 1) * batch_size, len(rows)))
  display.close()
  return list(correct / np.maximum(total, 1))


def merge_counts(
  triples: Sequence[Triple], accuracies: Sequence[float], counts_path: str | None
) -> list[dict]:
  """Records {subj, rel, obj, acc, (n_docs, n_subj, n_obj, n_both)} keyed by (subj, rel, obj)."""
  counts = {}
  if counts_path:
    with fileio.open_file(counts_path, "rb") as f:
      for lineno, row in json_lines(f):
        if isinstance(row, ValueError):
          raise ValueError(f"{counts_path}:{lineno}: {row}")
        if not isinstance(row, dict) or not {"subj", "rel", "obj"} <= row.keys():
          raise ValueError(f"{counts_path}:{lineno}: a counts row needs subj, rel and obj")
        counts[(row["subj"], row["rel"], row["obj"])] = row
  records = []
  for triple, acc in zip(triples, accuracies):
    record = dict(counts.get((triple.subj, triple.rel, triple.obj), {}))
    record.update(subj=triple.subj, rel=triple.rel, obj=triple.obj, acc=float(acc))
    records.append(record)
  return records


@exit_cleanly_on_interrupt()
def main(argv: Sequence[str] | None = None) -> int:
  parser = OneLineParser(description="Closed-book QA accuracy per triple.")
  parser.add_argument("--workdir", required=True, help="a jaxlab LM run directory")
  parser.add_argument("--triples", required=True)
  parser.add_argument("--templates", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--counts", default=None, help="counts.jsonl to merge into the records")
  parser.add_argument("--templates_per_relation", type=int, default=20)
  parser.add_argument("--samples", type=int, default=20)
  parser.add_argument("--temperature", type=float, default=0.7)
  parser.add_argument("--top_p", type=float, default=1.0)
  parser.add_argument("--max_new_tokens", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    triples, _ = load_triples(args.triples)
    templates = load_templates(args.templates)
    run = load_run(args.workdir)
    accuracies = cbqa_accuracy(
      run,
      triples,
      templates,
      templates_per_relation=args.templates_per_relation,
      samples=args.samples,
      temperature=args.temperature,
      top_p=args.top_p,
      max_new_tokens=args.max_new_tokens,
      batch_size=args.batch_size,
      seed=args.seed,
    )
    records = merge_counts(triples, accuracies, args.counts)
  except (ValueError, FileNotFoundError, KeyError) as e:
    fail(str(e))
  write_jsonl_atomic(args.out, records)
  print(
    f"cbqa: mean accuracy {np.mean(accuracies):.4f} over {len(triples)} triples -> {args.out}",
    file=sys.stderr,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
