"""check_data: bad LM data is one line naming the file (and line) before anything is written."""

import os

import pytest

from jaxlab.data import checks
from jaxlab.data.checks import check_data
from jaxlab.data.sources import JsonlSource
from jaxlab.fileio import open_file

from .helpers import corpus, data_config, write_jsonl

# The first bytes of a PNG image: what a glob that also matches images hands the pipeline.
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"


def _error(cfg) -> str:
  with pytest.raises(ValueError) as e:
    check_data(cfg)
  message = str(e.value)
  assert "\n" not in message
  return message


def test_good_data_passes(tmp_path, sentencepiece_model):
  write_jsonl(tmp_path / "train.jsonl", corpus(40))
  (tmp_path / "eval.txt").write_text("one document\n\n  \nanother ✓\n", encoding="utf-8")
  check_data(data_config(kind="jsonl", train_files=str(tmp_path / "*.jsonl")))
  check_data(data_config(kind="text", train_files=str(tmp_path / "*.txt"), eval_fraction=0.5))
  check_data(
    data_config(
      kind="jsonl",
      train_files=str(tmp_path / "train.jsonl"),
      eval_files=str(tmp_path / "train.jsonl"),
      tokenizer={"kind": "sentencepiece", "path": sentencepiece_model},
    )
  )
  check_data(data_config())  # synthetic


@pytest.mark.parametrize("kind, name", [("jsonl", "empty.jsonl"), ("text", "empty.txt")])
@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_empty_file(tmp_path, kind, name, content):
  write_jsonl(tmp_path / "a.jsonl", ["x", "y"])
  (tmp_path / name).write_text(content)
  files = f"{tmp_path}/a.jsonl,{tmp_path}/{name}" if kind == "jsonl" else str(tmp_path / name)
  assert _error(data_config(kind=kind, train_files=files)) == (
    f"{tmp_path}/{name}: no documents (the file is empty or has only blank lines)"
  )


def test_malformed_jsonl_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "ok"}\n\n{"text": "cut short\n{"text": "fine"}\n')
  assert _error(data_config(kind="jsonl", train_files=str(path))) == (
    f"{path}:3: malformed JSON (Unterminated string starting at column 10)"
  )


@pytest.mark.parametrize("kind, name", [("jsonl", "image.jsonl"), ("text", "image.txt")])
def test_binary_file(tmp_path, kind, name):
  path = tmp_path / name
  path.write_bytes(BINARY)
  assert _error(data_config(kind=kind, train_files=str(path))) == (
    f"{path}:1: binary data, not UTF-8 text (byte 0x89 at column 1)"
  )


def test_binary_line_after_text_and_nul_bytes(tmp_path):
  path = tmp_path / "docs.txt"
  path.write_bytes(b"fine\n\nstill fine \xc3\xa9\nbad \xff here\n")
  assert _error(data_config(kind="text", train_files=str(path))) == (
    f"{path}:4: binary data, not UTF-8 text (byte 0xff at column 5)"
  )
  path.write_bytes(b'{"text": "a"}\n{"text": "\x00"}\n')  # valid UTF-8, but binary
  assert _error(data_config(kind="jsonl", train_files=str(path))) == (
    f"{path}:2: binary data, not UTF-8 text (byte 0x00 at column 11)"
  )


def test_record_missing_the_text_field(tmp_path):
  path = write_jsonl(tmp_path / "docs.jsonl", ["a", "b", "c"], field="body")
  assert _error(data_config(kind="jsonl", train_files=path)) == (
    f"{path}:1: no string field 'text'"
  )
  check_data(data_config(kind="jsonl", train_files=path, text_field="body"))
  with open(path, "a") as f:
    f.write('{"body": 7}\n')
  assert _error(data_config(kind="jsonl", train_files=path, text_field="body")) == (
    f"{path}:4: no string field 'body'"
  )


def test_unknown_kind(tmp_path):
  path = write_jsonl(tmp_path / "docs.jsonl", ["a", "b"])
  assert _error(data_config(kind="jsnol", train_files=path)) == (
    "unknown data.kind 'jsnol'; expected one of synthetic, jsonl, text, array_record, seqio"
  )


def test_garbage_sentencepiece_model(tmp_path):
  model = tmp_path / "tokenizer.model"
  model.write_bytes(os.urandom(4096))
  cfg = data_config(tokenizer={"kind": "sentencepiece", "path": str(model)})
  assert _error(cfg) == f"{model}: not a SentencePiece model (sentencepiece cannot parse it)"


def test_files_and_globs_named_with_their_config_key(tmp_path):
  path = write_jsonl(tmp_path / "docs.jsonl", ["a", "b"])
  assert _error(data_config(kind="jsonl", train_files=path, eval_files=f"{tmp_path}/x*")) == (
    f"data.eval_files: glob '{tmp_path}/x*' matches no files"
  )
  assert _error(data_config(kind="text", train_files=" , ")) == (
    "data.kind 'text' needs data.train_files (comma-separated globs)"
  )
  assert _error(data_config(kind="jsonl", train_files=path, eval_fraction=0.9)) == (
    "data.eval_fraction: cannot hold out 2 eval documents from only 2 (data.eval_files is empty)"
  )


def test_each_file_is_read_once(tmp_path, monkeypatch):
  write_jsonl(tmp_path / "a.jsonl", corpus(5))
  write_jsonl(tmp_path / "b.jsonl", corpus(5))
  opened = []

  def counting_open(path, *args, **kwargs):
    opened.append(os.path.basename(path))
    return open_file(path, *args, **kwargs)

  monkeypatch.setattr(checks.fileio, "open_file", counting_open)
  check_data(
    data_config(
      kind="jsonl",
      train_files=f"{tmp_path}/*.jsonl",
      eval_files=f"{tmp_path}/b.jsonl,{tmp_path}/a.jsonl",
    )
  )
  assert sorted(opened) == ["a.jsonl", "b.jsonl"]


def test_source_reports_a_binary_line_like_the_check(tmp_path):
  path = tmp_path / "docs.jsonl"
  path.write_bytes(b'{"text": "ok"}\n' + BINARY)
  source = JsonlSource(str(path))
  assert source[0] == "ok"
  with pytest.raises(ValueError) as e:
    source[1]
  assert str(e.value) == f"{path}:2: binary data, not UTF-8 text (byte 0x89 at column 1)"
