"""TL-Training's error-category reward for one tool call (arXiv 2412.15495).

A predicted call is compared with the gold call and put in the first category that applies,
from format errors down to an exact match; each category has a fixed reward (`REWARDS`), for
TL-Training's PPO stage to optimize and for reports to name. Both calls are read with
`parse_call`, so double-quoted, numeric, list and dict arguments and values containing ")" are
all compared (the reference implementation only saw single-quoted values).

Values are equal under JSON equality (`json_equal`): numbers compare numerically (3 == 3.0), but
a string never equals a number ("3" != 3) and booleans are not numbers (True != 1); strings are
compared exactly, whitespace included; lists in order, dicts regardless of key order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from jaxlab.data.tool_calls import parse_call


class Category(enum.Enum):
  """What is wrong with a predicted call, checked in this order. Parameter flags: hallucinated =
  a key the tool does not declare; redundant = a declared key the gold call does not use;
  missing = a gold key the prediction lacks."""

  FORMAT_ERROR = "format_error"
  TOOL_HALLUCINATION = "tool_hallucination"
  WRONG_TOOL = "wrong_tool"
  HALLUCINATED_REDUNDANT_MISSING = "hallucinated_redundant_missing"
  HALLUCINATED_REDUNDANT = "hallucinated_redundant"
  HALLUCINATED_MISSING = "hallucinated_missing"
  REDUNDANT_MISSING = "redundant_missing"
  HALLUCINATED = "hallucinated"
  REDUNDANT = "redundant"
  MISSING = "missing"
  CONTENT_ERROR = "content_error"
  CORRECT = "correct"


REWARDS: Mapping[Category, float] = MappingProxyType(
  {
    Category.FORMAT_ERROR: -2.0,
    Category.TOOL_HALLUCINATION: -2.0,
    Category.WRONG_TOOL: -1.5,
    Category.HALLUCINATED_REDUNDANT_MISSING: -1.8,
    Category.HALLUCINATED_REDUNDANT: -1.3,
    Category.HALLUCINATED_MISSING: -1.3,
    Category.REDUNDANT_MISSING: -1.0,
    Category.HALLUCINATED: -0.8,
    Category.REDUNDANT: -0.5,
    Category.MISSING: -0.5,
    Category.CONTENT_ERROR: -0.25,
    Category.CORRECT: 1.0,
  }
)

# (hallucinated, redundant, missing) -> category, for calls to the right tool with wrong keys.
_PARAMETER_ERRORS = {
  (True, True, True): Category.HALLUCINATED_REDUNDANT_MISSING,
  (True, True, False): Category.HALLUCINATED_REDUNDANT,
  (True, False, True): Category.HALLUCINATED_MISSING,
  (False, True, True): Category.REDUNDANT_MISSING,
  (True, False, False): Category.HALLUCINATED,
  (False, True, False): Category.REDUNDANT,
  (False, False, True): Category.MISSING,
}


def json_equal(a: Any, b: Any) -> bool:
  """Equality of JSON values: numbers numerically, never a string or bool equal to a number;
  lists/tuples element-wise in order, dicts by key set and values."""
  if isinstance(a, bool) or isinstance(b, bool):
    return type(a) is type(b) and a == b
  if isinstance(a, int | float) and isinstance(b, int | float):
    return a == b
  if isinstance(a, list | tuple) and isinstance(b, list | tuple):
    return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
  if isinstance(a, str | None) and isinstance(b, str | None):
    return a == b
  return False


def call_category(prediction: str, gold: str, tools: Mapping[str, Sequence[str]]) -> Category:
  """The category of the `prediction` call against the `gold` one; `tools` maps each declared
  tool to its parameter names. Raises ValueError if the gold call does not parse or does not
  fit `tools` (a data bug, not a model error)."""
  answer = parse_call(gold)
  if answer is None:
    raise ValueError(f"gold call does not parse: {gold[:200]!r}")
  if answer.name not in tools or not set(answer.arguments) <= set(tools[answer.name]):
    raise ValueError(f"gold call {answer.name!r} does not fit its declared tools")
  call = parse_call(prediction)
  if call is None:
    return Category.FORMAT_ERROR
  if call.name not in tools:
    return Category.TOOL_HALLUCINATION
  if call.name != answer.name:
    return Category.WRONG_TOOL
  declared, predicted, expected = set(tools[call.name]), set(call.arguments), set(answer.arguments)
  flags = (
    bool(predicted - declared),
    bool((predicted & declared) - expected),
    bool(expected - predicted),
  )
  if any(flags):
    return _PARAMETER_ERRORS[flags]
  if not json_equal(call.arguments, answer.arguments):
    return Category.CONTENT_ERROR
  return Category.CORRECT


def call_reward(prediction: str, gold: str, tools: Mapping[str, Sequence[str]]) -> float:
  """TL-Training's reward for `prediction` (see `call_category`; rewards in `REWARDS`)."""
  return REWARDS[call_category(prediction, gold, tools)]
