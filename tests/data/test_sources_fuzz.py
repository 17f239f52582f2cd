"""Fuzz: the document sources read any file's bytes as documents or fail in one line naming it."""

import io
import json
import os
import re
import shutil

import pytest
from array_record.python.array_record_module import ArrayRecordWriter
from hypothesis import example, given
from hypothesis import strategies as st

from jaxlab.data.sources import (
  SOURCE_KINDS,
  ArrayRecordSource,
  JsonlSource,
  TextSource,
  build_source,
  resolve_globs,
)
from tests.fuzzing import (
  all_characters,
  encode_json_line,
  fuzz_settings,
  json_soup,
  json_values,
  parse_or_error,
)

_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("sources_fuzz"))


def _fresh_dir(root: str) -> str:
  """An empty directory per example (examples share the module's tmp dir)."""
  path = os.path.join(root, "case")
  shutil.rmtree(path, ignore_errors=True)
  os.makedirs(path)
  return path


def _write_files(root: str, contents: list[bytes], suffix: str) -> tuple[str, list[str]]:
  directory = _fresh_dir(root)
  paths = [os.path.join(directory, f"{i}{suffix}") for i in range(len(contents))]
  for path, content in zip(paths, contents):
    with open(path, "wb") as f:
      f.write(content)
  return os.path.join(directory, f"*{suffix}"), paths


def _non_blank_lines(content: bytes) -> list[tuple[int, bytes]]:
  """(1-based line number, line) of the lines a reader splitting on b"\\n" sees as non-blank."""
  return [(n, line) for n, line in enumerate(io.BytesIO(content), start=1) if line.strip()]


TEXT_FIELD = st.sampled_from(["text", "body"]) | st.text(all_characters(), max_size=6)
ASCII = st.booleans()
JSON_LINE = st.one_of(
  st.builds(encode_json_line, json_values(st.sampled_from(["text", "body", "x"])), ASCII),
  st.builds(
    encode_json_line,
    st.fixed_dictionaries(
      {"text": st.text(all_characters(), max_size=30)}, optional={"body": json_values()}
    ),
    ASCII,
  ),
  json_soup().map(lambda s: s.encode("utf-8", "surrogatepass")),
  st.binary(max_size=30),
)
NEWLINE = st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n"])
JSONL_FILE = st.builds(
  lambda lines, newline, bom: (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines),
  st.lists(JSON_LINE, max_size=6),
  NEWLINE,
  st.booleans(),
)

# Lines that once crashed (or could crash) the JSONL reader; always run.
NASTY_JSONL = [
  b"[" * 100_000,  # RecursionError in the JSON decoder
  b'{"text": ' * 50_000,
  b'{"text": "x", "n": ' + b"9" * 5000 + b"}",  # ValueError: int string-conversion limit
  b'{"text": "\xff"}',  # not UTF-8
  b"\xff\xfe{\x00",
  b'{"text": "\\ud800"}',  # lone surrogate from an escape: not encodable as UTF-8
  b'{\x00"\x00t\x00"\x00:\x00 \x00"\x00x\x00"\x00}\x00',  # NUL bytes: once read as UTF-16
  b'\xef\xbb\xbf{"text": "bom"}',
  b'{"text": "a\xe2\x80\xa8b"}',  # raw U+2028 inside a string
]


def _expected_text(line: bytes, text_field: str) -> str | None:
  """The document a correct reader returns for a JSONL line, or None when it must refuse it."""
  try:
    row = json.loads(line.decode("utf-8-sig"))
  except (UnicodeDecodeError, ValueError, RecursionError):
    return None
  if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
    return None
  return _SURROGATE.sub("\ufffd", row[text_field])


def _check_jsonl(root: str, contents: list[bytes], text_field: str) -> None:
  pattern, paths = _write_files(root, contents, ".jsonl")
  source, error = parse_or_error(lambda: JsonlSource(pattern, text_field))
  assert error is None, error
  expected = [(p, n, line) for p, c in zip(paths, contents) for n, line in _non_blank_lines(c)]
  assert len(source) == len(expected)
  for i, (path, lineno, line) in enumerate(expected):
    document, error = parse_or_error(lambda i=i: source[i], prefix=f"{path}:{lineno}: ")
    want = _expected_text(line, text_field)
    if want is None:
      assert error is not None, (line, document)
    else:
      assert document == want, (line, error)
      document.encode("utf-8")


@fuzz_settings()
@given(contents=st.lists(JSONL_FILE, min_size=1, max_size=3), text_field=TEXT_FIELD)
@example(contents=[b'{"text": "ok"}\n{"body": "x"}\n\n["text"]\n{"text": '], text_field="text")
def test_jsonl_source_reads_documents_or_names_file_and_line(root, contents, text_field):
  _check_jsonl(root, contents, text_field)


@pytest.mark.parametrize("line", NASTY_JSONL)
def test_jsonl_nasty_lines(tmp_path, line):
  _check_jsonl(str(tmp_path), [b'{"text": "ok"}\n' + line + b"\n"], "text")


TEXT_FILE = st.binary(max_size=200) | st.builds(
  lambda lines, newline: newline.join(s.encode("utf-8", "surrogatepass") for s in lines),
  st.lists(st.text(all_characters(), max_size=20), max_size=8),
  NEWLINE | st.sampled_from([b"\r", b"\x0b", b"\x85"]),
)


@fuzz_settings()
@given(contents=st.lists(TEXT_FILE, min_size=1, max_size=3))
@example(contents=[b"first\n\n  \nsecond\r\nthird", b"\xff\xfe\n\xed\xa0\x80\n\r\r\n"])
def test_text_source_one_document_per_non_blank_line(root, contents):
  pattern, _ = _write_files(root, contents, ".txt")
  source, error = parse_or_error(lambda: TextSource(pattern))
  assert error is None, error
  expected = [line for c in contents for _, line in _non_blank_lines(c)]
  assert len(source) == len(expected)
  for i, line in enumerate(expected):
    document, error = parse_or_error(lambda i=i: source[i])
    assert error is None, error
    assert document == line.decode("utf-8", errors="replace").rstrip("\r\n")
    assert "\n" not in document
    document.encode("utf-8")


ARRAY_RECORD = st.one_of(
  st.binary(max_size=40),
  st.builds(encode_json_line, json_values(st.sampled_from(["text", "x"])), ASCII),
  json_soup().map(lambda s: s.encode("utf-8", "surrogatepass")),
  st.sampled_from(NASTY_JSONL),
)


def _write_array_record(path: str, records: list[bytes]) -> None:
  writer = ArrayRecordWriter(path, "group_size:1")
  for record in records:
    writer.write(record)
  writer.close()


@fuzz_settings(max_examples=100)
@given(records=st.lists(ARRAY_RECORD, min_size=1, max_size=6), text_field=TEXT_FIELD)
def test_array_record_source_reads_records_or_names_file_and_record(root, records, text_field):
  path = os.path.join(_fresh_dir(root), "docs.array_record")
  _write_array_record(path, records)
  source, error = parse_or_error(lambda: ArrayRecordSource(path, text_field))
  assert error is None, error
  assert len(source) == len(records)
  for i in range(len(records)):
    document, error = parse_or_error(lambda i=i: source[i], prefix=f"{path} record {i}: ")
    if error is None:
      document.encode("utf-8")


PATTERN_PART = st.one_of(
  st.sampled_from(["0.jsonl", "*.jsonl", "*", "?.jsonl", "[01].jsonl", "missing-*", "", " "]),
  st.text(st.sampled_from("ab01*?[]!-. \\\x00{}"), max_size=8),
  st.text(all_characters(), max_size=8).filter(lambda s: "/" not in s and ".." not in s),
)


@fuzz_settings()
@given(
  parts=st.lists(PATTERN_PART, max_size=4),
  kind=st.sampled_from(SOURCE_KINDS) | st.text(max_size=8),
  text_field=TEXT_FIELD,
)
def test_globs_and_kinds_resolve_or_fail_in_one_line(root, parts, kind, text_field):
  directory = _fresh_dir(root)
  for name in ("0.jsonl", "1.jsonl"):
    with open(os.path.join(directory, name), "w") as f:
      f.write('{"text": "x"}\n')
  patterns = ",".join(os.path.join(directory, part) if part.strip() else part for part in parts)
  paths, error = parse_or_error(lambda: resolve_globs(patterns))
  if error is None:
    assert paths and all(os.path.isfile(p) for p in paths)
  if kind == "array_record":
    return  # the JSONL files above are not ArrayRecord files
  parse_or_error(lambda: build_source(kind, patterns, text_field=text_field, synthetic_num_docs=3))
