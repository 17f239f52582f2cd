"""The per-triple count as an Apache Beam pipeline: the same counts as the local runner, on any
Beam runner (DirectRunner by default; Dataflow, Flink or Spark through pipeline options).

Pipeline: corpus file names -> reshuffle -> documents (corpus_io, through Beam's file systems, so
gs:// and friends work) -> per document the matched cells (one automaton per worker, built in
DoFn.setup) -> one global sum of count vectors (combiner lifting pre-sums on every worker) ->
per-triple rows -> one JSONL file, written by Beam to a temporary name and renamed when complete.

On a remote runner the workers need jaxlab, pyahocorasick and pyarrow installed, e.g. with
`--extra_package dist/jaxlab-0.1.0.tar.gz` in --beam_options.
"""

from __future__ import annotations

import glob
import shlex
import shutil
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from jaxlab.progress import Progress
from jaxlab.smi.corpus_io import iter_documents
from jaxlab.smi.matcher import (
  DOCUMENT_CELL,
  Matcher,
  PatternIndex,
  build_index,
  format_rows,
  rows_from_counts,
)
from jaxlab.smi.triples import Triple

METRICS_NAMESPACE = "jaxlab.smi.count"


def match_files(pattern: str) -> list[str]:
  """Sorted paths matching a glob on any Beam file system (local, gs://, hdfs://, ...)."""
  return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def _open(path: str) -> BinaryIO:
  return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _read_documents(path: str) -> Iterator[str]:
  return iter_documents(path, _open)


class _MatchDocuments(beam.DoFn):
  """Document -> list of matched cells; the automaton is built once per DoFn instance."""

  def __init__(self, index: PatternIndex, progress_every_s: float):
    self._index = index
    self._progress_every_s = progress_every_s

  def setup(self) -> None:
    self._matcher = Matcher(self._index)
    self._documents = Metrics.counter(METRICS_NAMESPACE, "documents")
    self._progress = Progress(
      None, label="count (beam worker)", unit="document", every_s=self._progress_every_s
    )
    self._seen = 0

  def process(self, document: str) -> Iterator[list[int]]:
    self._documents.inc()
    self._seen += 1
    self._progress.update(self._seen)
    yield self._matcher.cells(document)


class _SumCells(beam.CombineFn):
  """Lists of matched cells -> the count vector (cell 0 counts documents)."""

  def __init__(self, n_cells: int):
    self._n_cells = n_cells

  def create_accumulator(self) -> np.ndarray:
    return np.zeros(self._n_cells, np.int64)

  def add_input(self, counts: np.ndarray, cells: list[int]) -> np.ndarray:
    counts[DOCUMENT_CELL] += 1
    counts[cells] += 1  # cells are distinct, so fancy-index increment is exact
    return counts

  def merge_accumulators(self, accumulators) -> np.ndarray:
    total = self.create_accumulator()
    for counts in accumulators:
      total += counts
    return total

  def extract_output(self, counts: np.ndarray) -> np.ndarray:
    return counts


def build_pipeline(
  pipeline: beam.Pipeline,
  triples: Sequence[Triple],
  corpus_files: Sequence[str],
  out: str,
  progress_every_s: float = 10.0,
) -> None:
  """Adds the counting transforms to `pipeline`, ending in the JSONL file `out`."""
  triples = list(triples)
  index = build_index(triples)

  def to_jsonl(counts: np.ndarray) -> str:
    # One element holding the whole file keeps the rows in triple order on every runner.
    return format_rows(rows_from_counts(triples, index, counts)).removesuffix("\n")

  _ = (
    pipeline
    | "Files" >> beam.Create(list(corpus_files))
    | "Spread" >> beam.Reshuffle()
    | "Read" >> beam.FlatMap(_read_documents)
    | "Match" >> beam.ParDo(_MatchDocuments(index, progress_every_s))
    | "Sum" >> beam.CombineGlobally(_SumCells(index.n_cells))
    | "Rows" >> beam.Map(to_jsonl)
    | "Write" >> beam.io.WriteToText(out, shard_name_template="", num_shards=1)
  )


def _delete_temporary_output(out: str) -> None:
  """Removes what WriteToText staged next to `out` before a failed run (Beam leaves it)."""
  directory, name = FileSystems.split(out)
  prefix = FileSystems.join(directory, f"beam-temp-{name}-")
  staged = match_files(prefix + "**")
  if staged:
    FileSystems.delete(staged)
  for path in glob.glob(glob.escape(prefix) + "*"):  # on a local file system, the directories
    shutil.rmtree(path, ignore_errors=True)


def count_triples_beam(
  triples: Sequence[Triple],
  corpus_files: Sequence[str],
  out: str,
  beam_options: str = "",
  progress_every_s: float = 10.0,
) -> int:
  """Runs the pipeline to completion, writing `out`; returns the number of documents counted.

  `beam_options` is a command-line style string of Beam pipeline options; without --runner the
  DirectRunner runs it in this process.
  """
  options = PipelineOptions(shlex.split(beam_options))
  if options.view_as(StandardOptions).runner is None:
    options.view_as(StandardOptions).runner = "DirectRunner"
  progress = Progress(None, label="count (beam)", unit="document", every_s=progress_every_s)
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, triples, corpus_files, out, progress_every_s)
  try:
    result = pipeline.run()
    result.wait_until_finish()
  except Exception:
    _delete_temporary_output(out)
    raise
  query = result.metrics().query(MetricsFilter().with_name("documents"))
  n_docs = sum(c.committed or 0 for c in query["counters"])
  progress.update(n_docs)
  progress.close()
  return n_docs
