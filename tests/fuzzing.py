"""Shared pieces of the parser fuzz tests (tests/**/test_*_fuzz.py).

Every parser a user's file or flag reaches must either parse or raise its documented error (a
ValueError subclass) with a one-line message; any other exception, a multi-line message or an
example that runs for seconds is a bug. Runs are bounded and derandomized, so CI is deterministic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.control import currently_in_test_context

# Hypothesis caches Unicode tables in .hypothesis/ under the working directory; keep the checkout
# clean (HYPOTHESIS_STORAGE_DIRECTORY still wins when set).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
  set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "jaxlab_hypothesis"))

# Examples per parser; tests/**/test_*_fuzz.py run in a few seconds each on CPU.
EXAMPLES = 200


def fuzz_settings(max_examples: int = EXAMPLES) -> settings:
  """Deterministic, bounded, no example database written into the checkout."""
  return settings(
    max_examples=max_examples,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
  )


# Longest a single example may run: generous for a slow CI machine, short of a hang.
EXAMPLE_TIME_LIMIT_S = 10


@contextlib.contextmanager
def time_limit(seconds: float = EXAMPLE_TIME_LIMIT_S) -> Iterator[None]:
  """Fails the example (TimeoutError, not a ValueError) if the body runs longer than `seconds`."""

  def _expired(signum, frame):
    raise TimeoutError(f"parser ran for more than {seconds} s")

  previous = signal.signal(signal.SIGALRM, _expired)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def check_one_line(error: BaseException, prefix: str = "") -> str:
  """The error's message, asserted to be one non-empty line (of sane length) starting `prefix`."""
  message = str(error)
  assert message, f"{type(error).__name__} with an empty message"
  assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
  assert len(message) < 1000, f"message of {len(message)} characters"
  assert message.startswith(prefix), f"{message!r} does not start with {prefix!r}"
  return message


def parse_or_error(
  parse: Callable[[], Any], error: type[BaseException] = ValueError, prefix: str = ""
) -> tuple[Any, str | None]:
  """(result, None) when `parse()` returns, (None, message) when it raises `error` with a one-line
  message starting `prefix`; anything else propagates and fails the example."""
  with time_limit():
    try:
      result = parse()
    except error as e:
      message = check_one_line(e, prefix)
      _event(f"error: {type(e).__name__}")
      return None, message
  _event("parsed")
  return result, None


def _event(label: str) -> None:
  """Counts outcomes for `pytest --hypothesis-show-statistics` (how much input parsed)."""
  if currently_in_test_context():
    event(label)


def all_characters() -> st.SearchStrategy[str]:
  """Any code point, lone surrogates included (argv carries undecodable bytes as surrogates)."""
  return st.characters(codec=None, exclude_categories=())


# Pieces of JSON (and near-JSON) whose random concatenations reach the decoder's odd corners.
JSON_TOKENS = (
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  " ",
  "\t",
  '"',
  '"text"',
  '"subj"',
  '"rel"',
  '"obj"',
  '"idx"',
  '"acc"',
  '"n_docs"',
  '"n_subj"',
  '"n_obj"',
  '"n_both"',
  '"[S]"',
  '"x"',
  '""',
  '"\\ud800"',
  '"\\u2028"',
  "\u2028",
  "\x85",
  "\x00",
  "\ufeff",
  "0",
  "1",
  "-1",
  "1.5",
  "1e999",
  "9" * 5000,
  "NaN",
  "Infinity",
  "-Infinity",
  "true",
  "false",
  "null",
  "\\",
)


def json_soup() -> st.SearchStrategy[str]:
  """Random concatenations of JSON tokens: mostly malformed, sometimes deeply odd, often valid."""
  return st.lists(st.sampled_from(JSON_TOKENS), max_size=30).map("".join)


def json_values(keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
  """Arbitrary JSON-encodable values; dictionary keys drawn from `keys` (default: any text)."""
  scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(all_characters(), max_size=20)
  )
  keys = keys if keys is not None else st.text(max_size=8)
  return st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=12,
  )


def encode_json_line(value: Any, ascii_only: bool) -> bytes:
  """One JSON line as a writer would produce it (lone surrogates escaped when not ASCII-only)."""
  return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
