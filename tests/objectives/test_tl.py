"""TL-Training's error-category reward: one hand-written case per category and value rule, gold
errors are data errors, and no string makes it raise."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxlab.data.tool_calls import Call, format_call, parse_call
from jaxlab.objectives.tl import REWARDS, Category, call_category, call_reward, json_equal
from tests.fuzzing import all_characters, fuzz_settings, time_limit

TOOLS = {
  "search": ["query", "limit", "lang"],
  "translate": ["text", "target"],
  "finish": ["answer"],
}
SEARCH = 'search(query="a (b)", limit=3)'
TRANSLATE = 'translate(text=["a", "b"], target="fr")'


@pytest.mark.parametrize(
  "prediction,gold,reward",
  [
    (SEARCH, SEARCH, 1.0),  # double quotes, a value containing ")"
    ("search(query='a (b)', limit=3.0)", SEARCH, 1.0),  # single quotes; 3.0 == 3
    ('search(limit=3, query="a (b)")', SEARCH, 1.0),  # argument order is free
    ("translate(text=['a', 'b'], target='fr')", TRANSLATE, 1.0),  # list values
    ('finish(answer={"k": [1.0, None]})', "finish(answer={'k': [1, null]})", 1.0),
    ('search(query="a (b)", limit="3")', SEARCH, -0.25),  # a string is not a number
    ('search(query="a (b)", limit=True)', 'search(query="a (b)", limit=1)', -0.25),  # nor a bool
    ('search(query="a (b) ", limit=3)', SEARCH, -0.25),  # whitespace counts
    ('search(query="a (b)", limit=4)', SEARCH, -0.25),
    ("translate(text=['b', 'a'], target='fr')", TRANSLATE, -0.25),  # list order counts
    ('search(query="a (b)"', SEARCH, -2.0),  # format: unbalanced
    ('search("a (b)", limit=3)', SEARCH, -2.0),  # format: positional argument
    ('search(query="a (b)", limit=3) and more', SEARCH, -2.0),  # format: trailing text
    ('lookup(query="a (b)", limit=3)', SEARCH, -2.0),  # tool hallucination
    ('translate(text="a (b)", target="fr")', SEARCH, -1.5),  # wrong tool
    ('search(query="a (b)", lang="en", page=2)', SEARCH, -1.8),  # hallucinated+redundant+missing
    ('search(query="a (b)", limit=3, lang="en", page=2)', SEARCH, -1.3),  # hallucinated+redundant
    ('search(query="a (b)", page=2)', SEARCH, -1.3),  # hallucinated+missing
    ('search(query="a (b)", lang="en")', SEARCH, -1.0),  # redundant+missing
    ('search(query="a (b)", limit=3, page=2)', SEARCH, -0.8),  # hallucinated
    ('search(query="a (b)", limit=3, lang="en")', SEARCH, -0.5),  # redundant
    ('search(query="a (b)")', SEARCH, -0.5),  # missing
  ],
)
def test_reward_table(prediction, gold, reward):
  assert call_reward(prediction, gold, TOOLS) == reward


def test_every_category_has_a_reward():
  assert set(REWARDS) == set(Category)
  assert call_category('search(query="x")', SEARCH, TOOLS) is Category.MISSING


@pytest.mark.parametrize(
  "gold,message",
  [
    ("search(query='x'", "gold call does not parse"),
    ("lookup(query='x')", "does not fit its declared tools"),
    ("search(page=1)", "does not fit its declared tools"),
  ],
)
def test_bad_gold_is_a_data_error(gold, message):
  with pytest.raises(ValueError, match=message):
    call_reward(SEARCH, gold, TOOLS)


def test_bad_gold_message_shows_its_first_200_characters():
  gold = "search(query='" + "x" * 300
  with pytest.raises(ValueError) as error:
    call_reward(SEARCH, gold, TOOLS)
  assert str(error.value) == f"gold call does not parse: {gold[:200]!r}"


@pytest.mark.parametrize(
  "a,b,equal",
  [
    (3, 3.0, True),
    (-0.0, 0, True),
    ("3", 3, False),
    (True, 1, False),
    (False, 0.0, False),
    (None, "None", False),
    (None, None, True),
    ([1, [2]], (1.0, [2.0]), True),
    ([1, 2], [2, 1], False),
    ({"a": 1, "b": [None]}, {"b": [None], "a": 1.0}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ("a b", "a  b", False),
    (True, True, True),
    (False, False, True),
    (True, False, False),
    (["a"], "a", False),  # a list is not its one-character string
    ({"a": 1}, ["a"], False),
    ({"a": 1}, "a", False),
  ],
)
def test_json_equal(a, b, equal):
  assert json_equal(a, b) is equal and json_equal(b, a) is equal


GOLDS = st.sampled_from(
  [SEARCH, TRANSLATE, "finish(answer='done')", "search(query='x', lang='de')"]
)
TOKENS = ("search", "translate", "finish", "page", "query", "=", "(", ")", "[", "]", ",", "'", '"')
TOKENS += (" ", "3", "3.0", "'3'", "True", "None", "{", "}", ":", "\\", "a (b)")


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
  """Applies (position, deleted length, inserted text) edits in turn."""
  for position, length, insert in edits:
    position %= len(text) + 1
    text = text[:position] + insert + text[position + length :]
  return text


# Well-formed calls of declared and undeclared tools with declared and undeclared keys.
CALLS = st.builds(
  Call,
  st.sampled_from(["search", "translate", "finish", "lookup"]),
  st.dictionaries(
    st.sampled_from(["query", "limit", "lang", "text", "target", "answer", "page"]),
    st.sampled_from(["a (b)", "x", 3, 3.0, "3", True, None, ["a", "b"], ["b", "a"], "fr"]),
    max_size=4,
  ),
).map(format_call)
PREDICTIONS = (
  CALLS
  | st.text(all_characters(), max_size=40)
  | st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)
  | st.builds(
    _mutate,
    GOLDS | CALLS,
    st.lists(
      st.tuples(st.integers(0, 100), st.integers(0, 4), st.sampled_from(TOKENS)), max_size=4
    ),
  )
)


@fuzz_settings(max_examples=400)
@given(PREDICTIONS, GOLDS)
def test_any_prediction_gets_a_reward(prediction, gold):
  with time_limit(2):
    category = call_category(prediction, gold, TOOLS)
  assert call_reward(prediction, gold, TOOLS) == REWARDS[category]
  call = parse_call(prediction)
  assert (category is Category.FORMAT_ERROR) == (call is None)
  if call is not None:  # the canonical spelling of a call gets the same reward
    assert call_category(format_call(call), gold, TOOLS) is category
