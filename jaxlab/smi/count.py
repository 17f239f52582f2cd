"""Document-level counts N_s, N_o, N_so, N per triple (docs/smi.md section 2).

python -m jaxlab.smi.count --triples T --corpus GLOB --out counts.jsonl [--runner local|beam]
    [--workers K] [--beam_options "--runner=DataflowRunner --project=..."] [--skip_malformed]

A document counts for a triple's subject if it contains `" " + subject` as a case-sensitive
substring (no right word boundary), likewise for the object; each document counts at most once
per cell. The local runner makes one Aho-Corasick pass per document and spreads files over
worker processes; the beam runner (count_beam.py) does the same on any Apache Beam runner.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxlab import cli, fileio
from jaxlab.progress import Progress
from jaxlab.smi.corpus_io import check_extension, iter_documents
from jaxlab.smi.matcher import (
  DOCUMENT_CELL,
  Matcher,
  PatternIndex,
  build_index,
  rows_from_counts,
  triple_fields,
)
from jaxlab.smi.triples import Triple, load_triples

# Worker-process state, set once per process by _init_worker; the counter is a shared
# multiprocessing Value of documents counted so far, read by the parent for progress.
_worker_matcher: Matcher | None = None
_worker_counter: Any = None


def _init_worker(index: PatternIndex, counter: Any) -> None:
  global _worker_matcher, _worker_counter
  # Ctrl-C reaches the whole process group: the parent alone handles it and terminates the pool.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _worker_matcher, _worker_counter = Matcher(index), counter


def _add_to_shared_counter(n: int) -> None:
  with _worker_counter.get_lock():
    _worker_counter.value += n


def _count_file_in_worker(path: str) -> np.ndarray:
  return _worker_matcher.count(iter_documents(path), _add_to_shared_counter)


def _count_in_process(index: PatternIndex, files: Sequence[str], progress: Progress) -> np.ndarray:
  matcher = Matcher(index)
  total = np.zeros(index.n_cells, np.int64)
  seen = 0

  def report(n: int) -> None:
    nonlocal seen
    seen += n
    progress.update(seen)

  for path in files:
    total += matcher.count(iter_documents(path), report)
  return total


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
  """SIGINT held back (not lost) in this thread, and blocked in processes started meanwhile."""
  if not hasattr(signal, "pthread_sigmask"):
    yield
    return
  previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _count_in_pool(
  index: PatternIndex, files: Sequence[str], workers: int, progress: Progress
) -> np.ndarray:
  # spawn, not fork: the parent may be multithreaded (JAX, pytest) and fork would copy locks.
  context = multiprocessing.get_context("spawn")
  counter = context.Value("q", 0)
  # Largest files first, one file per task, so the last busy worker is not stuck with a big one.
  files = sorted(files, key=fileio.size, reverse=True)
  with _sigint_blocked():  # workers inherit the blocked SIGINT: no traceback from their start-up
    pool = context.Pool(workers, initializer=_init_worker, initargs=(index, counter))
  with pool:
    result = pool.map_async(_count_file_in_worker, files, chunksize=1)
    while not result.ready():
      result.wait(1.0)
      progress.update(counter.value)
    return np.sum(result.get(), axis=0, dtype=np.int64)


def count_triples(
  triples: Sequence[Triple],
  corpus_files: Sequence[str],
  workers: int | None = None,
  progress_every_s: float = 10.0,
) -> list[dict]:
  """Per-triple rows (triple fields + n_docs, n_subj, n_obj, n_both) over local corpus files.

  `workers` processes (default: all CPUs, at most one per file) each count whole files.
  Progress goes to stderr every `progress_every_s` seconds, and once at the end.
  """
  for path in corpus_files:
    check_extension(path)
  index = build_index(triples)
  workers = min(workers or os.cpu_count() or 1, len(corpus_files))
  progress = Progress(None, label="count", unit="document", every_s=progress_every_s)
  if workers <= 1:
    counts = _count_in_process(index, corpus_files, progress)
  else:
    counts = _count_in_pool(index, corpus_files, workers, progress)
  progress.update(int(counts[DOCUMENT_CELL]))
  progress.close()
  return rows_from_counts(triples, index, counts)


def count_triples_naive(triples: Sequence[Triple], documents: Iterable[str]) -> list[dict]:
  """Reference counter: every triple against every document with Python `in` (slow, obvious)."""
  documents = list(documents)
  rows = []
  for t in triples:
    subj, obj = " " + t.subj, " " + t.obj
    n_subj = n_obj = n_both = 0
    for document in documents:
      has_subj, has_obj = subj in document, obj in document
      n_subj += has_subj
      n_obj += has_obj
      n_both += has_subj and has_obj
    rows.append(
      {
        **triple_fields(t),
        "n_docs": len(documents),
        "n_subj": n_subj,
        "n_obj": n_obj,
        "n_both": n_both,
      }
    )
  return rows


def _parse_args(argv: Sequence[str]):
  parser = cli.OneLineParser(prog="python -m jaxlab.smi.count", description=__doc__.split("\n")[0])
  parser.add_argument("--triples", required=True, help="JSON or JSONL file of {subj, rel, obj}.")
  parser.add_argument(
    "--corpus", required=True, help="Glob of corpus files (.jsonl/.json, .txt, .parquet)."
  )
  parser.add_argument("--out", required=True, help="Output JSONL file of per-triple counts.")
  parser.add_argument("--runner", choices=("local", "beam"), default="local")
  parser.add_argument(
    "--workers", type=int, default=None, help="Local worker processes (default: number of CPUs)."
  )
  parser.add_argument(
    "--beam_options",
    default="",
    help="Beam pipeline options, e.g. '--runner=DataflowRunner --project=P'.",
  )
  parser.add_argument(
    "--skip_malformed",
    action="store_true",
    help="Skip (and count) malformed triple rows instead of failing.",
  )
  return parser.parse_args(argv)


@cli.exit_cleanly_on_interrupt()
def main(argv: Sequence[str]) -> None:
  args = _parse_args(argv)
  if args.workers is not None and args.workers < 1:
    cli.fail(f"--workers must be >= 1, got {args.workers}")
  try:
    triples, skipped = load_triples(args.triples, args.skip_malformed)
  except (OSError, ValueError) as e:
    cli.fail(str(e))
  if not triples:
    cli.fail(f"{args.triples}: no triples")
  if skipped:
    print(f"skipped {skipped} malformed triple rows in {args.triples}", file=sys.stderr)
  try:
    if args.runner == "beam":
      from jaxlab.smi import count_beam  # pylint: disable=g-import-not-at-top  (needs apache_beam)

      files = count_beam.match_files(args.corpus)
    else:
      files = fileio.glob(args.corpus)
    if not files:
      cli.fail(f"--corpus: no file matches {args.corpus!r}")
    for path in files:
      check_extension(path)
    if args.runner == "beam":
      # The DirectRunner logs a failing DoFn's traceback before re-raising; we report it once.
      logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
      count_beam.count_triples_beam(triples, files, args.out, args.beam_options)
    else:
      rows = count_triples(triples, files, args.workers)
      fileio.write_jsonl_atomic(args.out, rows)
  except (OSError, ValueError) as e:
    cli.fail(str(e))
  print(
    f"wrote counts for {len(triples)} triples over {len(files)} files to {args.out}",
    file=sys.stderr,
  )


if __name__ == "__main__":
  main(sys.argv[1:])
