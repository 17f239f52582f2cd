"""parse_call reads every value style a model writes, rejects everything else with None (never an
exception, whatever the string), and round-trips with format_call."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxlab.data.tool_calls import MAX_DEPTH, Call, format_call, parse_call
from tests.fuzzing import all_characters, fuzz_settings, time_limit


@pytest.mark.parametrize(
  "text,arguments",
  [
    ("f()", {}),
    ("f(a='x')", {"a": "x"}),
    ('f(a="x")', {"a": "x"}),
    ('f(a=\'it\\\'s\', b="say \\"hi\\"")', {"a": "it's", "b": 'say "hi"'}),
    ("f(a='x)y, z=(1', b=\"[{'\")", {"a": "x)y, z=(1", "b": "[{'"}),
    ('f(a="\\n\\t\\\\\\/\\x41\\u00e9\\ud83d\\ude00")', {"a": "\n\t\\/Aé\U0001f600"}),
    (
      "f(a=3, b=-2, c=0.5, d=-1.5e-3, e=2E3, f=.5, g=+7)",
      {"a": 3, "b": -2, "c": 0.5, "d": -1.5e-3, "e": 2000.0, "f": 0.5, "g": 7},
    ),
    (
      "f(a=True, b=true, c=False, d=false, e=None, f=null)",
      {"a": True, "b": True, "c": False, "d": False, "e": None, "f": None},
    ),
    (
      "f(a=['a', \"b\", 1, [2, []]], b=(1, 2), c=(3,), d=(), e=(4))",
      {"a": ["a", "b", 1, [2, []]], "b": [1, 2], "c": [3], "d": [], "e": 4},
    ),
    ("f(a={'x': {\"y\": [null, {}]}, 'z': 1,})", {"a": {"x": {"y": [None, {}]}, "z": 1}}),
    ("  f ( a = 1 ,\n b\t=\r\n'x' , )  \n", {"a": 1, "b": "x"}),
    ("f(from='NYC', to='LA', class=1)", {"from": "NYC", "to": "LA", "class": 1}),
    ("f(a='line\nbreak')", {"a": "line\nbreak"}),
  ],
)
def test_parses(text, arguments):
  call = parse_call(text)
  assert call == Call("f", arguments)
  assert [type(v) for v in call.arguments.values()] == [type(v) for v in arguments.values()]


@pytest.mark.parametrize(
  "text",
  [
    "",
    "f",
    "f(",
    "f(a=1",
    "f(a=1))",
    "f(a=[1)",
    "f(a=[1}]",
    "f(a='x)",
    "f(a='x\")",
    "f(1)",
    "f(a=1, 2)",
    "f(x)",
    "f(a=x)",
    "f(a=1, a=2)",
    "f(a={'k': 1, 'k': 2})",
    "f(a={1: 2})",
    "f(a=1,,)",
    "f(,)",
    "f(a==1)",
    "f(a=1) trailing",
    "text f(a=1)",
    "f(a=1)\nf(b=2)",
    "1f(a=1)",
    "my-tool(a=1)",
    "obj.method(a=1)",
    "f(a=3abc)",
    "f(a=1.2.3)",
    "f(a=1e)",
    "f(a=1e999)",
    "f(a=NaN)",
    "f(a=-Infinity)",
    "f(a=" + "9" * 5000 + ")",
    "f(a='\\q')",
    "f(a='\\u12')",
    "f(a='\\",
    "f(a={'x' 1})",
    "f(a=" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + ")",
  ],
)
def test_rejects(text):
  assert parse_call(text) is None


def test_nesting_is_bounded_not_recursive():
  deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
  assert parse_call(f"f(a={deep})") == Call("f", {"a": json.loads(deep)})
  with time_limit(2):
    assert parse_call("f(a=" + "[" * 1_000_000) is None
    assert parse_call("f(a=" + "{'k': " * 100_000) is None


def test_format_call_is_canonical():
  call = parse_call("f(a='x', b=3, c=['y', 1.5], d={'k': None}, e=True, f='é\"')")
  assert format_call(call) == 'f(a="x", b=3, c=["y", 1.5], d={"k": null}, e=true, f="é\\"")'
  assert format_call(Call("g", {})) == "g()"
  with pytest.raises(ValueError):
    format_call(Call("g", {"a": float("nan")}))


IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
JSON_SCALARS = (
  st.none()
  | st.booleans()
  | st.integers()
  | st.floats(allow_nan=False, allow_infinity=False)
  | st.text(all_characters(), max_size=12)
)
JSON_VALUES = st.recursive(
  JSON_SCALARS,
  lambda children: (
    st.lists(children, max_size=4)
    | st.dictionaries(st.text(all_characters(), max_size=6), children, max_size=4)
  ),
  max_leaves=10,
)
CALLS = st.builds(Call, IDENTIFIERS, st.dictionaries(IDENTIFIERS, JSON_VALUES, max_size=5))


@fuzz_settings(max_examples=300)
@given(CALLS)
def test_format_then_parse_round_trips(call):
  text = format_call(call)
  assert parse_call(text) == call
  assert format_call(parse_call(text)) == text  # same types too (3 stays 3, not 3.0)


# Pieces whose random concatenations reach the parser's corners.
CALL_TOKENS = ("f", "(", ")", "[", "]", "{", "}", ",", "=", ":", " ", "\n", "'", '"', "\\")
CALL_TOKENS += ("a", "1", "-2.5e3", "True", "null", "'x'", '"y"', "\\u", "\\ud800", "9" * 5000)


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
  """Applies (position, deleted length, inserted text) edits in turn."""
  for position, length, insert in edits:
    position %= len(text) + 1
    text = text[:position] + insert + text[position + length :]
  return text


EDITS = st.lists(
  st.tuples(st.integers(0, 10_000), st.integers(0, 3), st.sampled_from(CALL_TOKENS)), max_size=4
)
FUZZ_TEXT = (
  st.text(all_characters(), max_size=40)
  | st.lists(st.sampled_from(CALL_TOKENS), max_size=30).map("".join)
  | st.builds(_mutate, CALLS.map(format_call), EDITS)
)


@fuzz_settings(max_examples=500)
@given(FUZZ_TEXT)
def test_any_string_parses_or_is_none(text):
  with time_limit(2):
    call = parse_call(text)
  if call is not None:  # whatever parses, format_call writes back faithfully
    assert parse_call(format_call(call)) == call
