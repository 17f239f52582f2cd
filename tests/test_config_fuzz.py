"""Fuzz: `--config.key=value` overrides and `get_config` arguments parse or fail in one line."""

import ast

import ml_collections
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jaxlab.config import ConfigError, apply_overrides, flat_keys, parse_arg
from tests.fuzzing import all_characters, fuzz_settings, parse_or_error

DEFAULTS = dict(
  steps=10, lr=0.1, smoke=False, name="x", shape=(1, 2), sizes=[3], maybe=None, zero_dim=()
)


def _config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(DEFAULTS, model=ml_collections.ConfigDict(dict(d_model=8, dtype="float32", rate=0.5)))
  )


KEYS = flat_keys(_config())

# Text that looks like values (literals, separators, quotes) as well as any text at all.
_VALUE_ALPHABET = st.sampled_from("0123456789-+.eEjJ_xX ()[]{},:'\"\\=\ntTrueFalsNonyY\x00\udc80")
# Values of every field type written as text, text that looks like values (literals,
# separators, quotes), and any text at all.
TYPED_RAW = st.one_of(
  st.integers().map(str),
  st.floats().map(str),
  st.sampled_from(["true", "False", "YES", "no", "1", "0", "None", "()", "(1,)", "[1, 'a']", "x"]),
  st.lists(st.integers() | st.text(max_size=4), max_size=3).map(lambda v: str(tuple(v))),
)
RAW = st.one_of(
  TYPED_RAW, st.text(_VALUE_ALPHABET, max_size=30), st.text(all_characters(), max_size=30)
)
# Mostly keys that exist (so the value parsers run), sometimes near misses and junk.
KEY = st.one_of(
  st.sampled_from(KEYS),
  st.sampled_from(KEYS),
  st.sampled_from(KEYS),
  st.text(st.sampled_from("abcdelmoz._ \n"), max_size=12),
)

# Inputs that once crashed (or could crash) the parsers; always run.
NASTY = [
  "{[]: 1}",  # TypeError: unhashable list
  "{[]}",
  "-" * 100_000 + "1",  # MemoryError / RecursionError in the parser
  "1" + "+1" * 100_000,  # RecursionError while building the AST
  "(" * 300 + ")" * 300,
  "1" * 5000,  # int string-conversion limit
  "{'a.b': 1}",  # ConfigDict rejects dotted field names
  "{'a': {'b.c': 1}}",
  "\x00",
  "\udc80",
]


def _get(config: ml_collections.ConfigDict, key: str):
  for part in key.split("."):
    config = config[part]
  return config


@fuzz_settings()
@given(overrides=st.lists(st.tuples(KEY, RAW), min_size=1, max_size=3))
def test_apply_overrides_parses_or_is_one_line_config_error(overrides):
  config = _config()
  before = {key: _get(config, key) for key, _ in overrides if key in KEYS}
  result, error = parse_or_error(lambda: apply_overrides(config, overrides), ConfigError)
  if error is None:
    assert result is None
    for key, value in before.items():
      if value is not None:  # None fields take any literal; the others keep their type
        assert type(_get(config, key)) is type(value), (key, _get(config, key))


@pytest.mark.parametrize("key", ["maybe", "shape", "sizes", "steps", "lr", "smoke"])
@pytest.mark.parametrize("raw", NASTY)
def test_nasty_override_values(key, raw):
  parse_or_error(lambda: apply_overrides(_config(), [(key, raw)]), ConfigError)


@fuzz_settings()
@given(key=st.sampled_from(KEYS), data=st.data())
def test_override_of_a_value_written_as_text_round_trips(key, data):
  """What str() writes for a value of the field's type parses back to that value."""
  config = _config()
  current = _get(config, key)
  literal = st.integers() | st.text(max_size=10) | st.booleans()
  strategy = {
    bool: st.booleans(),
    int: st.integers(),
    float: st.floats(allow_nan=False),
    str: st.text(all_characters(), max_size=20),
    tuple: st.lists(literal, max_size=4).map(tuple),
    list: st.lists(literal, max_size=4),
    type(None): literal,
  }[type(current)]
  new = data.draw(strategy)
  apply_overrides(config, [(key, str(new))])
  got = _get(config, key)
  if current is None and isinstance(new, str):
    try:  # a None field reads a Python literal when the text is one, else the text itself
      new = ast.literal_eval(new)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
      pass
  if isinstance(got, ml_collections.ConfigDict):
    got = got.to_dict()
  assert got == new and type(got) is type(new), (got, new)


ARG_DEFAULTS = dict(steps=0, smoke=False, name="a", lr=1e-3, seed=None, sizes=(1,))
ARG_ITEM = st.one_of(
  st.sampled_from(list(ARG_DEFAULTS)),
  st.tuples(st.sampled_from(list(ARG_DEFAULTS)), RAW).map(lambda kv: f"{kv[0]}={kv[1]}"),
  st.tuples(st.sampled_from(list(ARG_DEFAULTS)), RAW).map(lambda kv: f"{kv[0]}={kv[1]}"),
  st.text(all_characters(), max_size=12),
)


@fuzz_settings()
@given(arg=st.lists(ARG_ITEM, max_size=5).map(",".join) | st.text(all_characters(), max_size=40))
@example(arg="steps=5,smoke")
def test_parse_arg_parses_or_is_one_line_config_error(arg):
  parsed, error = parse_or_error(lambda: parse_arg(arg, **ARG_DEFAULTS), ConfigError)
  if error is None:
    assert set(parsed) == set(ARG_DEFAULTS)
    for key, default in ARG_DEFAULTS.items():
      if default is not None:
        assert type(parsed[key]) is type(default), (key, parsed[key])


@pytest.mark.parametrize("key", ["seed", "sizes", "steps"])
@pytest.mark.parametrize("raw", NASTY)
def test_nasty_get_config_arguments(key, raw):
  parse_or_error(lambda: parse_arg(f"{key}={raw}", **ARG_DEFAULTS), ConfigError)
