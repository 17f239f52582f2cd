"""Fuzz: triples and templates files load or fail in one line naming the file (and line)."""

import json
import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jaxlab.smi.triples import SUBJECT_SLOT, Triple, load_templates, load_triples
from tests.fuzzing import (
  all_characters,
  encode_json_line,
  fuzz_settings,
  json_soup,
  json_values,
  parse_or_error,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("triples_fuzz"))


def _write(root: str, name: str, content: bytes) -> str:
  path = os.path.join(root, name)
  with open(path, "wb") as f:
    f.write(content)
  return path


FIELD_TEXT = st.text(all_characters(), max_size=12) | st.sampled_from(["A", "r", "B", ""])
# Rows shaped like triples, with every field sometimes missing or of the wrong type.
TRIPLE_ROW = st.fixed_dictionaries(
  {},
  optional={
    "subj": FIELD_TEXT | json_values(),
    "rel": FIELD_TEXT | json_values(),
    "obj": FIELD_TEXT | json_values(),
    "idx": st.integers() | st.none() | json_values(),
  },
)
TRIPLE_LINE = st.one_of(
  st.builds(encode_json_line, TRIPLE_ROW, st.booleans()),
  st.builds(encode_json_line, json_values(), st.booleans()),
  json_soup().map(lambda s: s.encode("utf-8", "surrogatepass")),
  st.binary(max_size=30),
)
NEWLINE = st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \n"])
TRIPLES_FILE = st.one_of(
  st.builds(
    lambda lines, newline, bom: (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines),
    st.lists(TRIPLE_LINE, max_size=6),
    NEWLINE,
    st.booleans(),
  ),
  st.builds(encode_json_line, st.lists(TRIPLE_ROW | json_values(), max_size=5), st.booleans()),
  st.builds(lambda s: b"[" + s.encode("utf-8", "surrogatepass"), json_soup()),
  st.binary(max_size=100),
)

NASTY = [
  b"[" * 100_000,  # RecursionError in the JSON decoder
  b"{" * 100_000,
  b'{"subj": "A", "rel": "r", "obj": "B", "idx": ' + b"9" * 5000 + b"}",  # int digit limit
  b'[{"subj": "A", "rel": "r", "obj": "B", "idx": ' + b"9" * 5000 + b"}]",
  b'{"subj": "\xff", "rel": "r", "obj": "B"}',  # not UTF-8
  b'[{"subj": "\xff", "rel": "r", "obj": "B"}]',
  b'{"subj": "A\xe2\x80\xa8B", "rel": "r", "obj": "B"}',  # raw U+2028 is valid inside JSON
  b'\xef\xbb\xbf{"subj": "A", "rel": "r", "obj": "B"}',
  b'{"subj": "\\ud800", "rel": "r", "obj": "B"}',  # lone surrogate: cannot be written as UTF-8
  b'{"subj": "' + b"x" * 100_000 + b'", "rel": 1}',  # a huge value in the message
  b'{"subj": ' + b"[" * 500 + b"]" * 500 + b', "rel": "r", "obj": "B"}',
]


def _check_triples(path: str, skip_malformed: bool) -> None:
  result, error = parse_or_error(lambda: load_triples(path, skip_malformed), prefix=path)
  if error is None:
    triples, skipped = result
    assert skipped >= 0 and (skipped == 0 or skip_malformed)
    for triple in triples:
      assert isinstance(triple, Triple)
      for value in (triple.subj, triple.rel, triple.obj):
        assert isinstance(value, str) and value
        value.encode("utf-8")  # written to records and fed to tokenizers later
      assert triple.idx is None or type(triple.idx) is int


@fuzz_settings()
@given(content=TRIPLES_FILE, skip_malformed=st.booleans())
@example(content=b'{"subj": "A", "rel": "r", "obj": "B"}\n{"subj": "A"}\n', skip_malformed=True)
def test_load_triples_parses_or_names_file_and_line(root, content, skip_malformed):
  _check_triples(_write(root, "triples.jsonl", content), skip_malformed)


@pytest.mark.parametrize("skip_malformed", [False, True])
@pytest.mark.parametrize("line", NASTY)
def test_load_triples_nasty_lines(tmp_path, line, skip_malformed):
  path = _write(str(tmp_path), "t.jsonl", b'{"subj": "A", "rel": "r", "obj": "B"}\n' + line)
  _check_triples(path, skip_malformed)
  _check_triples(_write(str(tmp_path), "t1.jsonl", line), skip_malformed)


def test_jsonl_line_numbers_count_newlines_only(tmp_path):
  """U+2028 and other Unicode line breaks are text inside a JSON string, not line ends."""
  rows = [{"subj": "A\u2028B\x85C", "rel": "r", "obj": "B"}, {"subj": "A", "rel": "r"}]
  content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
  path = _write(str(tmp_path), "t.jsonl", content)
  with pytest.raises(ValueError, match=r"t\.jsonl:2: field 'obj'"):
    load_triples(path)
  assert load_triples(path, skip_malformed=True) == ([Triple("A\u2028B\x85C", "r", "B")], 1)


def test_not_utf8_names_file_and_line(tmp_path):
  path = _write(
    str(tmp_path), "t.jsonl", b'{"subj": "A", "rel": "r", "obj": "B"}\n{"subj": "\xff"}'
  )
  with pytest.raises(ValueError, match=r"t\.jsonl:2: binary data, not UTF-8 text \(byte 0xff"):
    load_triples(path)
  assert load_triples(path, skip_malformed=True) == ([Triple("A", "r", "B")], 1)


TEMPLATES = st.dictionaries(
  st.text(all_characters(), max_size=6),
  st.lists(
    st.text(max_size=6).map(lambda s: s + SUBJECT_SLOT) | st.text(max_size=8) | json_values(),
    max_size=3,
  )
  | json_values(),
  max_size=4,
)
VALID_TEMPLATES = st.dictionaries(
  st.text(max_size=6),
  st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)).map(SUBJECT_SLOT.join), min_size=1),
  max_size=4,
)
TEMPLATES_FILE = st.one_of(
  st.builds(encode_json_line, VALID_TEMPLATES, st.booleans()),
  st.builds(encode_json_line, TEMPLATES, st.booleans()),
  st.builds(encode_json_line, json_values(), st.booleans()),
  json_soup().map(lambda s: s.encode("utf-8", "surrogatepass")),
  st.binary(max_size=100),
)


@fuzz_settings()
@given(content=TEMPLATES_FILE, bom=st.booleans())
@example(content=b'{"capital": ["[S] is the capital of"]}', bom=True)
def test_load_templates_parses_or_names_file(root, content, bom):
  path = _write(root, "templates.json", (b"\xef\xbb\xbf" if bom else b"") + content)
  templates, error = parse_or_error(lambda: load_templates(path), prefix=path)
  if error is None:
    assert isinstance(templates, dict)
    for rel, items in templates.items():
      assert isinstance(rel, str) and isinstance(items, list) and items
      assert all(isinstance(t, str) and SUBJECT_SLOT in t for t in items)
      (rel + "".join(items)).encode("utf-8")


@pytest.mark.parametrize(
  "content",
  [
    b"[" * 100_000,
    b'{"r": [' + b"9" * 5000 + b"]}",
    b'{"r": ["\xff [S]"]}',
    b'{"r": ["\\udc80 [S]"]}',
    b'{"\\udc80": ["[S]"]}',
    b'{"r": ["' + b"x" * 100_000 + b'"]}',
    b'{"' + b"r" * 100_000 + b'": []}',
  ],
)
def test_load_templates_nasty_files(tmp_path, content):
  path = _write(str(tmp_path), "templates.json", content)
  parse_or_error(lambda: load_templates(path), prefix=path)
