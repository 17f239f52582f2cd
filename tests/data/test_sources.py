"""File and synthetic document sources."""

import collections
import json
import math

import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from jaxlab.data.sources import (
  ArrayRecordSource,
  JsonlSource,
  SyntheticSource,
  TextSource,
  build_source,
  resolve_globs,
)

from .helpers import write_jsonl


def test_jsonl_reads_comma_separated_globs_in_order_skipping_blank_lines(tmp_path):
  write_jsonl(tmp_path / "a-0.jsonl", ["zero", "one"], field="body")
  (tmp_path / "a-1.jsonl").write_text('\n{"body": "two"}\n   \n{"body": "three ✓"}\n')
  write_jsonl(tmp_path / "b.jsonl", ["four"], field="body")
  source = JsonlSource(f"{tmp_path}/a-*.jsonl, {tmp_path}/b.jsonl", text_field="body")
  assert len(source) == 5
  assert [source[i] for i in (4, 0, 3, 2, 1)] == ["four", "zero", "three ✓", "two", "one"]
  with pytest.raises(IndexError):
    source[5]


@pytest.mark.parametrize(
  "bad_line, problem",
  [
    ('{"text": ', "malformed JSON"),
    ('{"body": "x"}', "no string field 'text'"),
    ('["text"]', "no string field 'text'"),
  ],
)
def test_jsonl_bad_row_names_file_and_line(tmp_path, bad_line, problem):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "ok"}\n\n' + bad_line + "\n")
  source = JsonlSource(str(path))
  assert source[0] == "ok"
  with pytest.raises(ValueError, match=f"bad.jsonl:3: {problem}"):
    source[1]


def test_text_source_one_document_per_non_blank_line(tmp_path):
  (tmp_path / "docs.txt").write_text("first doc\n\n  \nsecond doc\r\nthird")
  source = TextSource(str(tmp_path / "*.txt"))
  assert [source[i] for i in range(len(source))] == ["first doc", "second doc", "third"]


def test_array_record_plain_and_json_records(tmp_path):
  path = str(tmp_path / "docs.array_record")
  writer = ArrayRecordWriter(path, "group_size:1")
  records = [
    "plain text",
    json.dumps({"text": "from json"}),
    "{not json}",
    json.dumps({"title": "no text"}),
  ]
  for record in records:
    writer.write(record.encode("utf-8"))
  writer.close()
  source = ArrayRecordSource(path)
  assert len(source) == 4
  assert [source[i] for i in range(3)] == ["plain text", "from json", "{not json}"]
  with pytest.raises(
    ValueError, match="docs.array_record record 3: JSON object has no string field 'text'"
  ):
    source[3]


def test_glob_matching_nothing_is_named(tmp_path):
  write_jsonl(tmp_path / "a.jsonl", ["x"])
  with pytest.raises(ValueError, match="glob '.*missing-\\*.jsonl' matches no files"):
    resolve_globs(f"{tmp_path}/a.jsonl,{tmp_path}/missing-*.jsonl")
  with pytest.raises(ValueError, match="unknown data kind 'csv'"):
    build_source("csv", f"{tmp_path}/a.jsonl")


def test_synthetic_source_is_deterministic_per_seed():
  first, again, other = (
    SyntheticSource(50, seed=0),
    SyntheticSource(50, seed=0),
    SyntheticSource(50, seed=1),
  )
  docs = [first[i] for i in range(50)]
  assert docs == [again[i] for i in range(50)]
  assert docs != [other[i] for i in range(50)]
  assert len(set(docs)) == 50 and all(doc.endswith(".") for doc in docs)


def test_synthetic_text_is_learnable():
  """Next-byte entropy given the previous byte is far below that of random bytes."""
  source = SyntheticSource(2000)
  data = " ".join(source[i] for i in range(len(source))).encode()
  pairs = collections.Counter(zip(data[:-1], data[1:]))
  firsts = collections.Counter(data[:-1])
  total = len(data) - 1
  conditional_entropy = -sum(n / total * math.log(n / firsts[a]) for (a, _), n in pairs.items())
  assert conditional_entropy < 0.5 * math.log(256)
