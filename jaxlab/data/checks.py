"""Bad LM data found before a run writes anything: one-line ValueErrors naming the file (and, for
text and JSON Lines files, the line).

`check_data` reads each data file once, front to back, and the tokenizer file once. JSON Lines
files are parsed in full: 1-3 s per 100 MB on one CPU (2 KB and 270-byte records; json.loads is
most of it); text files are only decoded (0.1-0.5 s per 100 MB); ArrayRecord files have their
index read, not their records.
"""

from __future__ import annotations

import grain
import ml_collections

from jaxlab import fileio
from jaxlab.data.seqio_tasks import seqio_provider
from jaxlab.data.sources import (
  SOURCE_KINDS,
  decode_line,
  nonblank_lines,
  parse_jsonl_record,
  resolve_globs,
  split_globs,
)
from jaxlab.data.splits import holdout_size
from jaxlab.data.tokenizers import Tokenizer, build_tokenizer

# The file kinds (jaxlab.data.sources) and seqio (a registered seqio Task or Mixture).
DATA_KINDS = (*SOURCE_KINDS, "seqio")


def check_data(data_cfg: ml_collections.ConfigDict) -> Tokenizer:
  """Raises ValueError (one line) for data the LM pipeline cannot read: an unknown `kind`, a
  tokenizer file that does not load, a glob matching nothing, a file that cannot be read, holds
  no documents, is binary (not UTF-8), has a malformed JSON line or a record without a string
  `text_field`, or too few documents to hold out the eval fraction. For kind seqio: seqio not
  installed, a module of `seqio_modules` that fails to import, an unknown task, a missing split or
  feature, or grain worker processes (its documents are read, and checked, as training goes).
  Returns the tokenizer it loaded."""
  kind = data_cfg.kind
  if kind not in DATA_KINDS:
    raise ValueError(f"unknown data.kind {kind!r}; expected one of {', '.join(DATA_KINDS)}")
  tokenizer = build_tokenizer(data_cfg.tokenizer)
  if kind == "seqio":
    seqio_provider(data_cfg)
    return tokenizer
  if kind == "synthetic":
    num_train_docs = data_cfg.synthetic_num_docs
    if num_train_docs <= 0:
      raise ValueError(f"data.synthetic_num_docs must be > 0, got {num_train_docs}")
  else:
    if not split_globs(data_cfg.train_files):
      raise ValueError(f"data.kind {kind!r} needs data.train_files (comma-separated globs)")
    train_files, eval_files = _files(data_cfg, "train_files"), _files(data_cfg, "eval_files")
    documents: dict[str, int] = {}  # path -> documents: a file named twice is read once
    for path in train_files + eval_files:
      if path not in documents:
        documents[path] = _check_file(kind, path, data_cfg.text_field)
    if eval_files:
      return tokenizer  # eval reads its own files: nothing is held out of train
    num_train_docs = sum(documents[path] for path in train_files)
  try:
    holdout_size(num_train_docs, data_cfg.eval_fraction)
  except ValueError as e:
    raise ValueError(f"data.eval_fraction: {e} (data.eval_files is empty)") from None
  return tokenizer


def _files(data_cfg: ml_collections.ConfigDict, field: str) -> list[str]:
  """The files `data.<field>` names (none when it is empty)."""
  if not split_globs(data_cfg[field]):
    return []
  try:
    return resolve_globs(data_cfg[field])
  except ValueError as e:
    raise ValueError(f"data.{field}: {e}") from None


def _check_file(kind: str, path: str, text_field: str) -> int:
  """Documents in `path`; ValueError naming the file (and line) for what cannot be read."""
  try:
    if kind == "array_record":
      num_docs = _array_record_length(path)
    else:
      num_docs = 0
      with fileio.open_file(path, "rb") as f:
        for line_number, _, line in nonblank_lines(f):
          where = f"{path}:{line_number}"
          if kind == "jsonl":
            parse_jsonl_record(line, where, text_field)
          else:
            decode_line(line, where)
          num_docs += 1
  except OSError as e:
    raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
  if num_docs == 0:
    empty = "no records" if kind == "array_record" else "the file is empty or has only blank lines"
    raise ValueError(f"{path}: no documents ({empty})")
  return num_docs


def _array_record_length(path: str) -> int:
  try:
    return len(grain.sources.ArrayRecordDataSource(path))
  except RuntimeError as e:
    reason = (str(e).strip().splitlines() or ["cannot parse it"])[0]
    raise ValueError(f"{path}: not an ArrayRecord file ({reason})") from None
