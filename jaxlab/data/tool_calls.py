"""Assistant tool calls written `name(key="value", n=3, xs=['a', "b"], d={"x": null})`.

`parse_call` is the one reader of this syntax (the TL-Training reward and the tool-use scorer
both use it); `format_call` writes it back canonically. The reader is a small hand-written
recursive-descent parser rather than Python's `ast`: `ast` rejects keyword names such as `from`
(common in tool schemas), accepts values JSON has no notion of (sets, bytes, complex numbers,
implicit string concatenation), and can raise RecursionError or MemoryError on adversarial
nesting. Here every value is JSON-like, nesting is bounded, and any input string yields a Call or
None, never an exception.

Accepted: keyword arguments only, values in either quote style (backslash escapes as in JSON and
Python: \\n \\t \\r \\b \\f \\/ \\\\ \\' \\" \\xHH \\uHHHH), ints and finite floats (sign, fraction,
exponent), True/False/true/false, None/null, lists, tuples (read as lists, as JSON has no
tuples) and dicts with string keys, nested up to `MAX_DEPTH`. Whitespace may surround any token,
and the call itself; any other text before or after it, positional arguments, duplicate keys, a
non-identifier name or unbalanced brackets make the input not a call (None).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

# Deepest nesting of lists/tuples/dicts inside one argument value; deeper input is not a call.
MAX_DEPTH = 32

_WHITESPACE = re.compile(r"[ \t\r\n]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_KEYWORDS = {"True": True, "true": True, "False": False, "false": False, "None": None, "null": None}
_ESCAPES = {
  "n": "\n",
  "t": "\t",
  "r": "\r",
  "b": "\b",
  "f": "\f",
  "/": "/",
  "\\": "\\",
  "'": "'",
  '"': '"',
}
_PLAIN = {"'": re.compile(r"[^'\\]*"), '"': re.compile(r'[^"\\]*')}  # string runs without escapes
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")


@dataclasses.dataclass(frozen=True)
class Call:
  """One tool call: the tool's name and its keyword arguments (JSON-like values)."""

  name: str
  arguments: dict[str, Any]


class _NotACall(Exception):
  """Raised inside the parser on the first syntax error; parse_call turns it into None."""


class _Parser:
  def __init__(self, text: str):
    self.text = text
    self.pos = 0

  def skip_whitespace(self) -> None:
    self.pos = _WHITESPACE.match(self.text, self.pos).end()

  def peek(self) -> str:
    return self.text[self.pos : self.pos + 1]

  def expect(self, char: str) -> None:
    self.skip_whitespace()
    if self.peek() != char:
      raise _NotACall
    self.pos += 1

  def identifier(self) -> str:
    self.skip_whitespace()
    match = _IDENTIFIER.match(self.text, self.pos)
    if not match:
      raise _NotACall
    self.pos = match.end()
    return match.group()

  def call(self) -> Call:
    name = self.identifier()
    self.expect("(")
    arguments: dict[str, Any] = {}
    while not self.closes(")"):
      key = self.identifier()
      if key in arguments:
        raise _NotACall
      self.expect("=")
      arguments[key] = self.value(depth=0)
      self.separator(")")
    self.skip_whitespace()
    if self.pos != len(self.text):
      raise _NotACall
    return Call(name, arguments)

  def closes(self, char: str) -> bool:
    """Consumes `char` (after whitespace) if it comes next."""
    self.skip_whitespace()
    if self.peek() == char:
      self.pos += 1
      return True
    return False

  def separator(self, closing: str) -> bool:
    """After an item: a comma (True), or the closing bracket left in place (False)."""
    if self.closes(","):
      return True
    self.skip_whitespace()
    if self.peek() != closing:
      raise _NotACall
    return False

  def value(self, depth: int) -> Any:
    self.skip_whitespace()
    char = self.peek()
    if char in ("'", '"'):
      return self.string(char)
    if char in ("[", "(", "{"):
      if depth >= MAX_DEPTH:
        raise _NotACall
      self.pos += 1
      return self.mapping(depth + 1) if char == "{" else self.sequence(char, depth + 1)
    match = _NUMBER.match(self.text, self.pos)
    if match:
      self.pos = match.end()
      return _number(match.group())
    word = _IDENTIFIER.match(self.text, self.pos)
    if word and word.group() in _KEYWORDS:
      self.pos = word.end()
      return _KEYWORDS[word.group()]
    raise _NotACall

  def sequence(self, opening: str, depth: int) -> Any:
    """A list, or a parenthesized value: `(x)` is x itself, `(x,)` and `()` are lists."""
    closing = "]" if opening == "[" else ")"
    items, comma = [], False
    while not self.closes(closing):
      items.append(self.value(depth))
      comma = self.separator(closing) or comma
    if opening == "(" and len(items) == 1 and not comma:
      return items[0]
    return items

  def mapping(self, depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    while not self.closes("}"):
      self.skip_whitespace()
      quote = self.peek()
      if quote not in ("'", '"'):
        raise _NotACall
      key = self.string(quote)
      if key in result:
        raise _NotACall
      self.expect(":")
      result[key] = self.value(depth)
      self.separator("}")
    return result

  def string(self, quote: str) -> str:
    self.pos += 1  # the opening quote
    pieces = []
    while True:
      end = _PLAIN[quote].match(self.text, self.pos).end()
      pieces.append(self.text[self.pos : end])
      if end == len(self.text):
        raise _NotACall
      self.pos = end + 1
      if self.text[end] == quote:
        return "".join(pieces)
      pieces.append(self.escape())

  def escape(self) -> str:
    """The character(s) of the escape sequence after a backslash."""
    char = self.peek()
    self.pos += 1
    if char in _ESCAPES:
      return _ESCAPES[char]
    if char == "x" and _HEX2.match(self.text, self.pos):
      self.pos += 2
      return chr(int(self.text[self.pos - 2 : self.pos], 16))
    if char != "u" or not _HEX4.match(self.text, self.pos):
      raise _NotACall
    code = int(self.text[self.pos : self.pos + 4], 16)
    self.pos += 4
    low = self.text[self.pos : self.pos + 6]  # a UTF-16 surrogate pair, as JSON writes it
    if 0xD800 <= code < 0xDC00 and low[:2] == "\\u" and _HEX4.fullmatch(low[2:]):
      low_code = int(low[2:], 16)
      if 0xDC00 <= low_code < 0xE000:
        self.pos += 6
        return chr(0x10000 + ((code - 0xD800) << 10) + (low_code - 0xDC00))
    return chr(code)


def _number(token: str) -> int | float:
  if any(c in token for c in ".eE"):
    value = float(token)
    if not math.isfinite(value):  # 1e999: not JSON, so not a value
      raise _NotACall
    return value
  try:
    return int(token)
  except ValueError:  # past Python's limit on digits in an int
    raise _NotACall from None


def parse_call(text: str) -> Call | None:
  """The call `text` spells, or None if it is not exactly one well-formed call (see module doc).

  Never raises for a str.
  """
  try:
    return _Parser(text).call()
  except _NotACall:
    return None


def format_call(call: Call) -> str:
  """`name(key=value, ...)` with JSON-encoded values (strings double-quoted, non-ASCII kept), so
  that `parse_call(format_call(c)) == c` for identifier names and keys and JSON values.

  Raises ValueError or TypeError for a value JSON cannot encode (NaN, infinity, an object).
  """
  arguments = ", ".join(
    f"{key}={json.dumps(value, ensure_ascii=False, allow_nan=False)}"
    for key, value in call.arguments.items()
  )
  return f"{call.name}({arguments})"
