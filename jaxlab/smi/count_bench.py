"""Counting throughput: the Aho-Corasick counter against the naive per-triple scan.

python -m jaxlab.smi.count_bench [--docs N] [--triples M] [--words_per_doc W]
    [--runner_docs R] [--workers K]

Generates N documents mentioning M triples' invented names, checks that both counters agree and
reports documents/s for the naive scan (every triple against every document) and for the
Aho-Corasick core, both in one process: their ratio measures the algorithm. Then, on a larger
corpus of R documents in JSONL files, the local runner with K worker processes end to end
(file reading and process start-up included), checked against the one-process core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence

from jaxlab.cli import exit_cleanly_on_interrupt
from jaxlab.smi.count import count_triples, count_triples_naive
from jaxlab.smi.matcher import Matcher, build_index, rows_from_counts
from jaxlab.smi.triples import Triple

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_FILLER = (
  "the of and to in a is that for it as was with be by on not he this are or his from "
  "at which but have an they you were her she there been one all we their"
).split()
MENTION_RATE = 0.03  # fraction of words that are subject or object names


def _name(rng: random.Random) -> str:
  return " ".join(
    "".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))).capitalize()
    for _ in range(rng.choice((1, 1, 2)))
  )


def generate_triples(n_triples: int, seed: int = 0) -> list[Triple]:
  """Triples with distinct invented subjects and ten times fewer objects (objects repeat)."""
  rng = random.Random(seed)
  objects = [_name(rng) for _ in range(max(1, n_triples // 10))]
  return [Triple(_name(rng), "rel", rng.choice(objects), i) for i in range(n_triples)]


def generate_documents(
  triples: Sequence[Triple], n_docs: int, words_per_doc: int, seed: int = 0
) -> list[str]:
  """Filler-word documents in which about MENTION_RATE of the words are the triples' names."""
  rng = random.Random(seed + 1)
  names = [t.subj for t in triples] + sorted({t.obj for t in triples})
  max_mentions = round(2 * MENTION_RATE * words_per_doc)
  documents = []
  for _ in range(n_docs):
    words = rng.choices(_FILLER, k=words_per_doc)
    for _ in range(rng.randint(0, max_mentions)):
      words[rng.randrange(words_per_doc)] = rng.choice(names)
    documents.append(" ".join(words))
  return documents


def _timed(fn, *args):
  start = time.perf_counter()
  result = fn(*args)
  return result, time.perf_counter() - start


def _count_one_process(
  triples: Sequence[Triple], documents: Sequence[str]
) -> tuple[list[dict], float, float]:
  """Rows, seconds building the automaton, seconds counting (excluding the build)."""
  index = build_index(triples)
  matcher, build_s = _timed(Matcher, index)
  counts, count_s = _timed(matcher.count, documents)
  return rows_from_counts(triples, index, counts), build_s, count_s


def _count_local_runner(
  triples: Sequence[Triple], documents: Sequence[str], workers: int
) -> tuple[list[dict], float]:
  """The local runner over 4 JSONL files per worker; returns rows and seconds counting."""
  with tempfile.TemporaryDirectory() as tmp:
    n_files = 4 * workers
    files = [os.path.join(tmp, f"part{k}.jsonl") for k in range(n_files)]
    for k, path in enumerate(files):
      with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in documents[k::n_files])
    return _timed(count_triples, triples, files, workers, float("inf"))


def run_benchmark(
  n_docs: int,
  n_triples: int,
  words_per_doc: int = 150,
  runner_docs: int = 200_000,
  workers: int = 2,
  seed: int = 0,
) -> dict:
  """Times the counters on generated corpora; raises AssertionError if any counts differ."""
  triples = generate_triples(n_triples, seed)
  documents = generate_documents(triples, n_docs, words_per_doc, seed)
  naive, naive_s = _timed(count_triples_naive, triples, documents)
  fast, build_s, fast_s = _count_one_process(triples, documents)
  if naive != fast:
    raise AssertionError("Aho-Corasick and naive counts differ")

  big = generate_documents(triples, runner_docs, words_per_doc, seed + 1)
  big_fast, _, big_fast_s = _count_one_process(triples, big)
  local, local_s = _count_local_runner(triples, big, workers)
  if local != big_fast:
    raise AssertionError("local runner and one-process counts differ")
  return {
    "docs": n_docs,
    "triples": n_triples,
    "words_per_doc": words_per_doc,
    "patterns": len(build_index(triples).patterns),
    "naive_docs_per_s": n_docs / naive_s,
    "aho_corasick_docs_per_s": n_docs / fast_s,
    "speedup": naive_s / fast_s,
    "automaton_build_s": build_s,
    "runner_docs": runner_docs,
    "aho_corasick_big_docs_per_s": runner_docs / big_fast_s,
    "local_runner_docs_per_s": runner_docs / local_s,
    "workers": workers,
  }


@exit_cleanly_on_interrupt()
def main(argv: Sequence[str]) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m jaxlab.smi.count_bench", description=__doc__.split("\n")[0]
  )
  parser.add_argument("--docs", type=int, default=2000)
  parser.add_argument("--triples", type=int, default=2000)
  parser.add_argument("--words_per_doc", type=int, default=150)
  parser.add_argument("--runner_docs", type=int, default=200_000)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  r = run_benchmark(
    args.docs, args.triples, args.words_per_doc, args.runner_docs, args.workers, args.seed
  )
  print(
    f"{r['triples']} triples ({r['patterns']} patterns), {r['words_per_doc']} words/document, "
    f"{os.cpu_count()} CPUs"
  )
  print(f"{r['docs']} documents, one process:")
  print(f"  naive per-triple scan      {r['naive_docs_per_s']:10,.0f} documents/s")
  print(f"  Aho-Corasick               {r['aho_corasick_docs_per_s']:10,.0f} documents/s")
  print(
    f"  ratio                      {r['speedup']:10,.1f}x "
    f"(automaton built once in {r['automaton_build_s']:.3f} s, not included)"
  )
  print(f"{r['runner_docs']} documents in JSONL files:")
  print(f"  Aho-Corasick, one process  {r['aho_corasick_big_docs_per_s']:10,.0f} documents/s")
  print(
    f"  local runner, {r['workers']} workers    {r['local_runner_docs_per_s']:10,.0f} "
    "documents/s (file reading, process start-up included)"
  )


if __name__ == "__main__":
  main(sys.argv[1:])
