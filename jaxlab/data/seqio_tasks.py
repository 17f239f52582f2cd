"""seqio interop: jaxlab's corpora as seqio Tasks, and seqio Tasks and Mixtures as LM documents.

Registering (for t5x, or for `data.kind=seqio` here):
  * `register_jsonl_task(name, train_files, eval_files)`: JSON Lines files (comma-separated globs,
    as `data.train_files`) as a Task with one string feature, the text of each line's
    `text_field`, and the splits "train" and, with `eval_files`, "validation". Lines are parsed
    as `data.kind=jsonl` parses them (same texts, same one-line errors naming file:line).
  * `register_smi_corpus(name, directory)`: the corpus an SMI study writes (corpus.jsonl; its
    eval_corpus.jsonl as "validation") in `directory` or in its data/ folder.

Reading (`data.kind=seqio` in jaxlab.data.pipeline): `seqio_documents` streams the texts of one
split of the Task or Mixture `data.seqio_task` for one host (seqio's ShardInfo), shuffled by
seqio with the run's seed; jaxlab tokenizes and packs them like any other kind. A feature that
is already tokenized (integer ids) is decoded with its own seqio vocabulary and re-tokenized by
`data.tokenizer`. The iterator's state is the count of documents read: a resumed iterator
rebuilds the same seeded seqio pipeline and skips that many (inside tf.data), so resuming costs
one re-read of what this host read so far (docs/seqio.md).

seqio and TensorFlow are imported on first use only: importing this module (or any jaxlab.data
module) imports neither.
"""

from __future__ import annotations

import atexit
import difflib
import importlib
import os
import re
import weakref
from collections.abc import Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.cli import first_line
from jaxlab.data.sources import nonblank_lines, parse_jsonl_record, split_globs

TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"
SMI_CORPUS = "corpus.jsonl"
SMI_EVAL_CORPUS = "eval_corpus.jsonl"
INSTALL_HINT = "pip install -e '.[seqio]'"


def import_seqio() -> tuple[Any, Any]:
  """(seqio, tensorflow), imported on first use, with TensorFlow kept off any GPU (JAX owns
  them); ValueError (one line) when seqio is not installed or fails to import."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines on import
  try:
    import seqio  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f"seqio is not installed ({INSTALL_HINT}): {first_line(e)}") from None
  except Exception as e:  # pylint: disable=broad-except  (a broken install: protobuf, TF, ...)
    raise ValueError(f"seqio fails to import: {type(e).__name__}: {first_line(e)}") from None
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow's devices are initialized already: someone else chose
    pass
  return seqio, tf


# Registering ---------------------------------------------------------------------------------


def register_jsonl_task(
  name: str,
  train_files: str | Sequence[str],
  eval_files: str | Sequence[str] = "",
  *,
  text_field: str = "text",
  shuffle_buffer_size: int = 1000,  # seqio's default
):
  """Registers (and returns) the seqio Task `name` over JSON Lines files.

  `train_files` and `eval_files` are comma-separated globs (or lists of globs), expanded when a
  dataset is built, files sorted within each glob; each non-blank line is one example
  {text_field: its text} (a scalar tf.string feature with a pass-through vocabulary: seqio does
  not tokenize it). The splits are "train" and, when `eval_files` is given, "validation". seqio
  shards hosts by file when there are at least as many files as hosts, else by example.
  """
  seqio, tf = import_seqio()
  splits = {TRAIN_SPLIT: _globs(train_files, "train_files")}
  if _globs(eval_files, "eval_files", required=False):
    splits[EVAL_SPLIT] = _globs(eval_files, "eval_files")

  def read_file(path):
    # Blocks of texts cross from Python to tf.data: one call per text would cost ~50 us each.
    blocks = tf.data.Dataset.from_generator(
      _JsonlTexts(text_field), args=(path,), output_signature=tf.TensorSpec((None,), tf.string)
    )
    return blocks.unbatch().map(lambda text: {text_field: text})

  return seqio.TaskRegistry.add(
    name,
    source=seqio.FileDataSource(read_file, splits),
    output_features={text_field: text_feature()},
    shuffle_buffer_size=shuffle_buffer_size,
  )


def register_smi_corpus(name: str, directory: str, **kwargs):
  """Registers (and returns) the seqio Task `name` over the corpus of an SMI study: `directory`
  is the study's workdir or its data/ folder (corpus.jsonl, and eval_corpus.jsonl as the
  "validation" split when present). `kwargs` go to `register_jsonl_task`."""
  data_dir = directory
  if not fileio.isfile(os.path.join(data_dir, SMI_CORPUS)):
    data_dir = os.path.join(directory, "data")
  train = os.path.join(data_dir, SMI_CORPUS)
  if not fileio.isfile(train):
    raise ValueError(f"{directory}: no SMI corpus ({SMI_CORPUS} here or in data/)")
  eval_path = os.path.join(data_dir, SMI_EVAL_CORPUS)
  return register_jsonl_task(
    name, [train], [eval_path] if fileio.isfile(eval_path) else [], **kwargs
  )


def text_feature():
  """The seqio Feature of raw text: a scalar string, left alone by seqio (jaxlab tokenizes)."""
  seqio, tf = import_seqio()
  return seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.string, rank=0)


def _globs(patterns: str | Sequence[str], what: str, required: bool = True) -> list[str]:
  globs = split_globs(",".join([patterns] if isinstance(patterns, str) else patterns))
  if required and not globs:
    raise ValueError(f"{what}: no file globs given")
  return globs


class _JsonlTexts:
  """path -> the texts of its JSON Lines records, in blocks of up to `block` (a tf.data
  generator; files are read through tf.io.gfile, as seqio's own file sources read them)."""

  def __init__(self, text_field: str, block: int = 256):
    self._text_field = text_field
    self._block = block

  def __call__(self, path: bytes):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    path = path.decode("utf-8")
    texts = []
    with tf.io.gfile.GFile(path, "rb") as f:
      for line_number, _, line in nonblank_lines(f):
        texts.append(parse_jsonl_record(line, f"{path}:{line_number}", self._text_field))
        if len(texts) == self._block:
          yield texts
          texts = []
    if texts:
      yield texts


# Reading -------------------------------------------------------------------------------------


def seqio_provider(data_cfg: ml_collections.ConfigDict):
  """The seqio Task or Mixture `data.seqio_task`, after importing `data.seqio_modules`; checks
  that it has both splits and that `data.text_field` is a text (or token-id) feature, and that no
  grain worker processes are asked for. ValueError (one line) for anything wrong."""
  name = data_cfg.seqio_task.strip()
  if not name:
    raise ValueError("data.kind 'seqio' needs data.seqio_task (a seqio Task or Mixture name)")
  if data_cfg.worker_count > 0:
    raise ValueError(
      "data.worker_count must be 0 with data.kind 'seqio' (tf.data reads with its own threads)"
    )
  try:
    seqio, tf = import_seqio()
  except ValueError as e:
    raise ValueError(f"data.kind 'seqio': {e}") from None
  modules = [m.strip() for m in data_cfg.seqio_modules.split(",") if m.strip()]
  for module in modules:
    try:
      importlib.import_module(module)
    except Exception as e:  # pylint: disable=broad-except  (whatever the module raises)
      raise ValueError(
        f"data.seqio_modules: cannot import {module!r} ({type(e).__name__}: {first_line(e)})"
      ) from None
  registered = [*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names()]
  if name not in registered:
    close = difflib.get_close_matches(name, registered, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    imported = f"after importing {', '.join(modules)}" if modules else "data.seqio_modules is empty"
    raise ValueError(f"data.seqio_task: no seqio Task or Mixture {name!r}{hint}; {imported}")
  provider = seqio.get_mixture_or_task(name)
  for field in ("seqio_train_split", "seqio_eval_split"):
    if data_cfg[field] not in provider.splits:
      raise ValueError(
        f"data.{field}: seqio task {name!r} has no split {data_cfg[field]!r} "
        f"(it has {', '.join(sorted(provider.splits))})"
      )
  feature = provider.output_features.get(data_cfg.text_field)
  if feature is None:
    raise ValueError(
      f"data.text_field: seqio task {name!r} has no feature {data_cfg.text_field!r} "
      f"(it has {', '.join(sorted(provider.output_features))})"
    )
  is_text = feature.dtype == tf.string and feature.rank == 0
  is_ids = feature.dtype.is_integer and feature.rank == 1
  if not (is_text or is_ids):
    raise ValueError(
      f"data.text_field: feature {data_cfg.text_field!r} of seqio task {name!r} is "
      f"{feature.dtype.name} of rank {feature.rank}; expected a string or a sequence of token ids"
    )
  return provider


def seqio_documents(
  data_cfg: ml_collections.ConfigDict,
  split: str,
  *,
  shuffle: bool,
  repeat: bool,
  seed: int,
  process_index: int,
  process_count: int,
) -> grain.IterDataset:
  """Texts of this host's shard of `split` ("train" or "eval": `data.seqio_train_split` or
  `data.seqio_eval_split`) of `data.seqio_task`, as a resumable grain dataset."""
  seqio_provider(data_cfg)  # Fails here, in one line, rather than inside the first batch.
  return _SeqioDocuments(
    _Reader(
      ml_collections.ConfigDict(data_cfg.to_dict()),
      split=data_cfg.seqio_train_split if split == "train" else data_cfg.seqio_eval_split,
      shuffle=shuffle,
      repeat=repeat,
      seed=seed,
      shard=(process_index, process_count),
    )
  )


class _Reader:
  """Builds the seqio dataset of one split and shard, and turns its examples into text."""

  def __init__(self, data_cfg, *, split, shuffle, repeat, seed, shard):
    self.task, self.split, self.shard = data_cfg.seqio_task.strip(), split, shard
    self._cfg, self._shuffle, self._repeat, self._seed = data_cfg, shuffle, repeat, seed
    self._vocabulary = None  # of a token-id feature, to decode it back into text

  def dataset(self, skip: int):
    """A numpy iterator over the text feature's values, `skip` examples in."""
    seqio, tf = import_seqio()
    provider = seqio_provider(self._cfg)
    feature = provider.output_features[self._cfg.text_field]
    self._vocabulary = None if feature.dtype == tf.string else feature.vocabulary
    index, count = self.shard
    ds = provider.get_dataset(
      sequence_length=None,  # Whole documents: the packer cuts them into rows itself.
      split=self.split,
      shuffle=self._shuffle,
      seed=self._seed,
      shard_info=seqio.ShardInfo(index=index, num_shards=count) if count > 1 else None,
      num_epochs=None if self._repeat else 1,
      use_cached=False,
    )
    ds = ds.map(lambda example: example[self._cfg.text_field])
    if skip:
      ds = ds.skip(skip)
    return ds.as_numpy_iterator()

  def text(self, value) -> str:
    if self._vocabulary is not None:
      return self._vocabulary.decode(np.asarray(value).tolist())
    return value.decode("utf-8", errors="replace")


class _SeqioDocuments(grain.IterDataset):
  """A grain dataset over a seqio split: texts, with the number read as the iterator state."""

  def __init__(self, reader: _Reader):
    super().__init__()
    self._reader = reader

  def __iter__(self) -> grain.DatasetIterator:
    return _SeqioDocumentIterator(self._reader)

  def __str__(self) -> str:
    return f"SeqioDocuments({self._reader.task}:{self._reader.split})"


# tf.data's message for an error raised inside a generator starts with the op's name in braces.
_OP_PREFIX = re.compile(r"^\{\{[^}]*\}\}\s*")


# Iterators not yet closed. A tf.data iterator whose generator (a Python function) is still
# prefetching when the interpreter exits can hang the exit, so whatever is left open is closed at
# exit (the trainer closes its train iterator; an eval pass cut short by eval_batches is not).
_OPEN_ITERATORS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_iterators() -> None:
  for iterator in list(_OPEN_ITERATORS):
    iterator.close()


class _SeqioDocumentIterator(grain.DatasetIterator):
  def __init__(self, reader: _Reader):
    super().__init__()
    self._reader = reader
    self._read = 0  # documents returned so far
    self._iterator = None  # built on the first next(): set_state may come before it
    _OPEN_ITERATORS.add(self)

  def __next__(self) -> str:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (seqio imported it already)

    self._assert_not_closed()
    if self._iterator is None:
      self._iterator = self._reader.dataset(skip=self._read)
    try:
      value = next(self._iterator)
    except StopIteration:
      if self._read == 0:
        raise ValueError(
          f"seqio task {self._reader.task!r} split {self._reader.split!r} has no documents "
          f"for host {self._reader.shard[0]} of {self._reader.shard[1]}"
        ) from None
      raise
    except tf.errors.OpError as e:
      message = _OP_PREFIX.sub("", e.message)
      raise ValueError(
        f"seqio task {self._reader.task!r} split {self._reader.split!r}: {first_line(message)}"
      ) from None
    self._read += 1
    return self._reader.text(value)

  def get_state(self) -> dict[str, Any]:
    return {"documents_read": self._read}

  def close(self) -> None:
    if self._closed:
      return
    self._iterator = None  # Frees tf.data's iterator and stops its prefetching threads.
    _OPEN_ITERATORS.discard(self)
    super().close()

  def set_state(self, state: dict[str, Any]) -> None:
    read = int(state["documents_read"])
    if read != self._read or self._iterator is None:
      self._read, self._iterator = read, None
