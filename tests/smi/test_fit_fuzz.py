"""Fuzz: SMI records files (counts + accuracy per triple) load and fit, or fail in one line."""

import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jaxlab.smi.fit import COUNT_FIELDS, fit_records, load_records
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
  return str(tmp_path_factory.mktemp("fit_fuzz"))


def _write(root: str, content: bytes) -> str:
  path = os.path.join(root, "records.jsonl")
  with open(path, "wb") as f:
    f.write(content)
  return path


COUNT = st.one_of(
  st.integers(0, 64),
  st.integers(),
  st.integers(2**53 - 2, 2**2000),
  st.floats(),
  st.booleans(),
  st.none(),
  st.text(max_size=3),
)
ACC = st.floats(0, 1) | st.floats() | st.integers(-1, 2) | st.booleans() | st.none()
STRING = st.text(all_characters(), max_size=8) | st.integers()
RECORD = st.fixed_dictionaries(
  {},
  optional={
    "subj": STRING,
    "rel": STRING,
    "obj": STRING,
    **{name: COUNT for name in COUNT_FIELDS},
    "acc": ACC,
  },
)


def _consistent(n_docs: int, n_subj: int, n_obj: int, n_both: int) -> dict:
  """A record that passes every check, from four numbers that may not."""
  n_docs = max(n_docs, 1)
  n_subj, n_obj = min(n_subj, n_docs), min(n_obj, n_docs)
  n_both = min(n_both, n_subj, n_obj)
  return dict(subj="s", rel="r", obj="o", n_docs=n_docs, n_subj=n_subj, n_obj=n_obj, n_both=n_both)


VALID_RECORD = st.builds(
  lambda counts, acc: dict(_consistent(*counts), acc=acc),
  st.tuples(*[st.integers(0, 50) | st.integers(0, 2**70)] * 4),
  st.floats(0, 1),
)
RECORD_LINE = st.one_of(
  st.builds(encode_json_line, VALID_RECORD, st.booleans()),
  st.builds(encode_json_line, RECORD, st.booleans()),
  st.builds(encode_json_line, json_values(), st.booleans()),
  json_soup().map(lambda s: s.encode("utf-8", "surrogatepass")),
  st.binary(max_size=30),
)
RECORDS_FILE = st.builds(
  lambda lines, newline: newline.join(lines),
  st.lists(RECORD_LINE, max_size=8)
  | st.lists(VALID_RECORD, max_size=8).map(lambda rows: [encode_json_line(r, True) for r in rows]),
  st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
)

NASTY = [
  b"[" * 100_000,  # RecursionError in the JSON decoder
  b'{"subj": "s", "rel": "r", "obj": "o", "n_docs": ' + b"9" * 5000 + b"}",  # int digit limit
  b'{"subj": "\xff"}',  # not UTF-8
  b'{"subj": "s", "rel": "r", "obj": "o", "n_docs": 1e400}',
  b'{"subj": "s", "rel": "r", "obj": "o", "acc": NaN, "n_docs": 2, "n_subj": 1, "n_obj": 1, '
  b'"n_both": 1}',
  # p_so * p_s * p_o underflows to 0.0: once a ZeroDivisionError in the MI formula.
  b'{"subj": "s", "rel": "r", "obj": "o", "acc": 0.5, "n_docs": 1' + b"0" * 400 + b", "
  b'"n_subj": 1, "n_obj": 1, "n_both": 1}',
  b'{"subj": "s", "rel": "r", "obj": "o", "acc": 0.5, "n_docs": 1' + b"0" * 200 + b", "
  b'"n_subj": 1, "n_obj": 1, "n_both": 1}',
]

GOOD = (
  b'{"subj": "a", "rel": "r", "obj": "o", "acc": 0.2, "n_docs": 64, "n_subj": 2, "n_obj": 4, '
  b'"n_both": 1}\n'
  b'{"subj": "b", "rel": "r", "obj": "o", "acc": 0.9, "n_docs": 64, "n_subj": 2, "n_obj": 2, '
  b'"n_both": 2}\n'
)


def _check(path: str) -> None:
  records, error = parse_or_error(lambda: load_records(path), prefix=f"{path}:")
  if error is not None:
    return
  for params, variant in ((7e9, "latest"), (2e9, "v1")):
    result, error = parse_or_error(lambda p=params, v=variant: fit_records(records, p, v))
    if error is None:
      assert result["n_triples"] == len(records)
      for fit in result["methods"].values():
        assert fit["n_groups"] >= 2


@fuzz_settings()
@given(content=RECORDS_FILE)
@example(content=GOOD)
def test_records_load_and_fit_or_fail_in_one_line(root, content):
  _check(_write(root, content))


@pytest.mark.parametrize("line", NASTY)
def test_nasty_records(tmp_path, line):
  _check(_write(str(tmp_path), GOOD + line + b"\n"))
  _check(_write(str(tmp_path), line))
