"""Tool-use trajectories as SFT data, the data side of TL-Training (arXiv 2412.15495).

A trajectory is a list of System / User / Assistant / Output (tool output) messages plus the
declared tools. It renders as `role: content` lines, and each assistant turn that is a target
becomes one SFT example: context = the rendered messages before it followed by "\\nAssistant: ",
target = the turn's text. Assistant turns answered by a User turn are chit-chat, not targets.
Mitigating adverse data (MAE): a turn whose following tool Output reports an error (see
`is_error_output`) is dropped from the loss but stays in the context of later turns, so the model
learns the recovery and not the failed call. The last assistant turn is always a target.

Readers take jaxlab's JSONL and the ToolBench / RoTBench conversation files; `tokenize_examples`
turns examples into fixed-length rows for `jaxlab.data.source.ArraySource`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxlab import fileio
from jaxlab.data import key_tokens
from jaxlab.data.tokenizers import Tokenizer

ROLES = ("System", "User", "Assistant", "Output")
# ToolBench / RoTBench speaker names.
CONVERSATION_ROLES = {
  "system": "System",
  "user": "User",
  "assistant": "Assistant",
  "function": "Output",
}
# Phrases that mark a failed tool call; the matching rule is in `is_error_output`. "error" also
# covers "connection error", "400 client error" and Python's `TypeError`-style names.
DEFAULT_ERROR_MARKERS = (
  "error",
  "exception",
  "traceback",
  "failed",
  "is not defined",
  "positional argument",
  "unexpected keyword argument",
  "not supported",
  "invalid api call",
  "referenced before assignment",
  "not json serializable",
  "unsupported operand",
  "invalid url",
  "unauthorized",
  "not authorized",
)
ROW_FIELDS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")


@dataclasses.dataclass(frozen=True)
class Message:
  """One turn; `role` is one of ROLES."""

  role: str
  content: str

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
    if not isinstance(self.content, str):
      raise ValueError(f"{self.role} content is {type(self.content).__name__}, not a string")


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """Messages and the declared tools (name -> parameter names). `answers` holds every acceptable
  text of the last assistant turn when the source lists several (RoTBench test items); that turn's
  content is the first."""

  messages: tuple[Message, ...]
  tools: Mapping[str, tuple[str, ...]]
  id: str = ""
  answers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ReadResult:
  """The well-formed trajectories of a file and how many malformed records were skipped."""

  trajectories: list[Trajectory]
  skipped: int


@dataclasses.dataclass(frozen=True)
class SFTExample:
  """A target turn (message index `turn` of trajectory `trajectory_id`) and its context."""

  context: str
  target: str
  tools: Mapping[str, tuple[str, ...]]
  trajectory_id: str
  turn: int


@dataclasses.dataclass(frozen=True)
class SFTCounts:
  """Examples kept, turns dropped by MAE and chit-chat turns (never targets)."""

  kept: int
  mae_dropped: int
  chitchat: int


@dataclasses.dataclass(frozen=True)
class TokenizeCounts:
  """Rows made, rows whose context was cut from the left, examples whose target did not fit."""

  rows: int
  truncated: int
  too_long: int


def render(messages: Sequence[Message]) -> str:
  """`role: content` per message, joined by newlines."""
  return "\n".join(f"{m.role}: {m.content}" for m in messages)


def sft_examples(
  trajectories: Iterable[Trajectory],
  error_markers: Sequence[str] | None = DEFAULT_ERROR_MARKERS,
) -> tuple[list[SFTExample], SFTCounts]:
  """One example per target assistant turn; `error_markers=None` turns MAE off."""
  examples, dropped, chitchat = [], 0, 0
  for trajectory in trajectories:
    messages = trajectory.messages
    turns = [i for i, m in enumerate(messages) if m.role == "Assistant"]
    for i in turns:
      following = messages[i + 1] if i + 1 < len(messages) else None
      if i != turns[-1] and following is not None:
        if following.role == "User":
          chitchat += 1
          continue
        if (
          error_markers is not None
          and following.role == "Output"
          and is_error_output(following.content, error_markers)
        ):
          dropped += 1
          continue
      context = render(messages[:i]) + "\nAssistant: " if i else "Assistant: "
      examples.append(SFTExample(context, messages[i].content, trajectory.tools, trajectory.id, i))
  return examples, SFTCounts(len(examples), dropped, chitchat)


def is_error_output(text: str, markers: Sequence[str] = DEFAULT_ERROR_MARKERS) -> bool:
  """Whether a tool output reports a failed call.

  Text is matched case-insensitively after splitting camelCase words (`TypeError` reads as
  "type error"): a marker fires only as a whole word sequence, its words separated by whitespace,
  its last word optionally plural, and no letter, digit or underscore on either side; so "error"
  does not fire in "terrorism" or "error_code". An output that parses as a JSON (or Python
  literal) object or list is data: only its keys are matched, with `_`, `-` and camelCase read as
  word breaks, and a matching key counts only when its value is non-empty (not null, false, 0, a
  blank or "none"/"null"/"false"/"0" string, or a container of such), so `{"error": null}`,
  `{"error_code": 0}` and `{"errors": []}` do not fire but `{"error": "rate limited"}` does. Its
  string values are not searched: results often quote text with these words in it. A JSON string
  is matched as text. In other text, quoted-key pairs with such an empty value (`"error": ""`,
  `'error': None`, `"errors": []`) are removed before matching, so truncated JSON reads the same.
  """
  pattern = _marker_pattern(tuple(markers))
  if pattern is None:
    return False
  stripped = text.strip()
  value = _parse_literal(stripped) if stripped[:1] in ("{", "[", '"') else _NOT_PARSED
  if isinstance(value, str):
    return bool(pattern.search(_split_camel(value).lower()))
  if value is not _NOT_PARSED:
    return _structured_error(value, pattern)
  return bool(pattern.search(_split_camel(_EMPTY_PAIR.sub(" ", text)).lower()))


def parse_action(text: str) -> tuple[str, dict[str, Any]] | None:
  """(tool name, arguments) of a "Thought: ...\\nAction: name\\nAction Input: {...}" answer,
  with the input written as JSON or as a Python dict literal; None when it is not one."""
  match = _ACTION.search(text)
  if match is None or not match["name"]:
    return None
  arguments = _parse_literal(match["input"].strip())
  return (match["name"], arguments) if isinstance(arguments, dict) else None


def call_name_span(text: str) -> tuple[int, int] | None:
  """Character span of the called tool's name: after "Action:" in the ReAct format, or the
  leading identifier of `name(...)`; None when the text holds no call."""
  match = _ACTION.search(text)
  if match is not None and match["name"]:
    return match.span("name")
  match = _CALL.match(text)
  return match.span("name") if match else None


def tools_from_system_prompt(prompt: str) -> dict[str, tuple[str, ...]]:
  """Declared tools (name -> parameter names) of a ToolBench-style system prompt.

  The tools are the first bracketed list in the prompt whose items are all objects with a string
  "name", written as JSON (RoTBench) or as a Python literal (ToolBench's `str(tools)`). Parameter
  names are the keys of "parameters"."properties" followed by any other names in its "required" /
  "optional" lists, or the "name"s of a list of parameter objects. {} when there is no such list.
  """
  for bracket in re.finditer(r"\[", prompt):
    end = _closing_bracket(prompt, bracket.start())
    if end is None:
      continue
    tools = _parse_literal(prompt[bracket.start() : end + 1])
    if (
      isinstance(tools, list)
      and tools
      and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)
    ):
      return {t["name"]: _parameter_names(t.get("parameters")) for t in tools}
  return {}


def read_jsonl(path: str, skip_malformed: bool = False) -> ReadResult:
  """Trajectories of a jaxlab JSONL file, one object per line:
  {"id": ..., "tools": {"name": ["param", ...]}, "messages": [{"role": ..., "content": ...}]}.

  "id" is optional (default "FILE:LINE"). A malformed record raises a one-line ValueError naming
  the file and its 0-based line number, or is skipped and counted with `skip_malformed`. Blank
  lines are ignored.
  """
  with fileio.open_file(path, "rb") as f:
    lines = [(index, line) for index, line in enumerate(f) if line.strip()]
  return _read_records(path, lines, _jsonl_trajectory, skip_malformed)


def read_conversations(path: str, skip_malformed: bool = False) -> ReadResult:
  """Trajectories of a ToolBench / RoTBench file: a JSON list of
  {"id": ..., "conversations": [{"from": "system"|"user"|"assistant"|"function", "value": ...}]}.

  Tools come from the system prompt (`tools_from_system_prompt`). The last value may be a list
  of acceptable assistant answers (RoTBench test items; see `Trajectory.answers`). Malformed items
  are reported or skipped as in `read_jsonl`, by 0-based index in the list; a file that is not a
  JSON list always raises.
  """
  with fileio.open_file(path, "rb") as f:
    try:
      items = json.load(f)
    except ValueError as e:
      raise ValueError(f"{path}: malformed JSON ({_one_line(e)})") from None
  if not isinstance(items, list):
    raise ValueError(f"{path}: expected a JSON list of conversations, got {type(items).__name__}")
  return _read_records(path, enumerate(items), _conversation_trajectory, skip_malformed)


def tokenize_examples(
  examples: Iterable[SFTExample],
  tokenizer: Tokenizer,
  seq_len: int,
  pkt: bool = False,
  w_max: float = key_tokens.DEFAULT_W_MAX,
  skip_too_long: bool = False,
) -> tuple[dict[str, np.ndarray], TokenizeCounts]:
  """[N, seq_len] arrays of ROW_FIELDS, one row per example, for `ArraySource`.

  A row is [BOS] + context + target + [EOS] as next-token inputs and targets: context targets
  weigh 0, target and EOS tokens 1 (or their PKT weights with `pkt`, see `key_tokens`). The
  context is cut from the left to fit; a target (with EOS) longer than `seq_len` raises a
  ValueError naming the example, or is skipped and counted with `skip_too_long`. Padding has
  pad ids, segment id 0, position 0 and weight 0; real tokens have segment id 1.
  """
  rows = {name: [] for name in ROW_FIELDS}
  truncated = too_long = 0
  for example in examples:
    if pkt:
      target_ids, target_weights = key_tokens.target_weights(
        tokenizer, example.target, call_name_span(example.target), example.tools, w_max
      )
    else:
      target_ids = [*tokenizer.encode(example.target), tokenizer.eos_id]
      target_weights = np.ones(len(target_ids), np.float32)
    room = seq_len - len(target_ids)
    if room < 0:
      if not skip_too_long:
        raise ValueError(
          f"{example.trajectory_id} turn {example.turn}: target of {len(target_ids)} tokens "
          f"with EOS does not fit seq_len {seq_len}"
        )
      too_long += 1
      continue
    context_ids = tokenizer.encode(example.context)
    truncated += len(context_ids) > room
    context_ids = context_ids[max(0, len(context_ids) - room) :]
    sequence = [tokenizer.bos_id, *context_ids, *target_ids]
    length, pad = len(sequence) - 1, seq_len - len(sequence) + 1
    weights = np.concatenate([np.zeros(len(context_ids), np.float32), target_weights])
    rows["inputs"].append(np.asarray(sequence[:-1] + [tokenizer.pad_id] * pad, np.int32))
    rows["targets"].append(np.asarray(sequence[1:] + [tokenizer.pad_id] * pad, np.int32))
    rows["segment_ids"].append(np.asarray([1] * length + [0] * pad, np.int32))
    rows["positions"].append(np.asarray([*range(length)] + [0] * pad, np.int32))
    rows["loss_weights"].append(np.concatenate([weights, np.zeros(pad, np.float32)]))
  dtypes = {name: np.float32 if name == "loss_weights" else np.int32 for name in ROW_FIELDS}
  arrays = {
    name: np.stack(value) if value else np.zeros((0, seq_len), dtypes[name])
    for name, value in rows.items()
  }
  return arrays, TokenizeCounts(len(rows["inputs"]), truncated, too_long)


_ACTION = re.compile(
  r"^[ \t]*Action[ \t]*:[ \t]*(?P<name>[^\n]*?)[ \t]*\n[ \t]*Action[ \t]+Input[ \t]*:(?P<input>.*)",
  re.MULTILINE | re.DOTALL,
)
_CALL = re.compile(r"\s*(?P<name>[A-Za-z_][\w.\-]*)\s*\(")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_EMPTY_PAIR = re.compile(
  r"""(["'])[^"'\n]*\1\s*:\s*(?:""|''|null|none|false|0|\[\s*\]|\{\s*\})\s*(?=[,}\]]|$)""",
  re.IGNORECASE,
)
_EMPTY_STRINGS = frozenset({"", "none", "null", "false", "0"})
_NOT_PARSED = object()


def _parse_literal(text: str) -> Any:
  """`text` as JSON, else as a Python literal, else _NOT_PARSED."""
  try:
    return json.loads(text)
  except ValueError:
    pass
  try:
    return ast.literal_eval(text)
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    return _NOT_PARSED


def _split_camel(text: str) -> str:
  return _CAMEL.sub(" ", text)


@functools.lru_cache(maxsize=16)
def _marker_pattern(markers: tuple[str, ...]) -> re.Pattern[str] | None:
  """Alternation of whole-word marker sequences over lowercased text (see is_error_output)."""
  phrases = [r"\s+".join(map(re.escape, m.lower().split())) for m in markers if m.strip()]
  if not phrases:
    return None
  return re.compile(r"(?<![a-z0-9_])(?:" + "|".join(phrases) + r")s?(?![a-z0-9_])")


def _structured_error(value: Any, pattern: re.Pattern[str]) -> bool:
  if isinstance(value, dict):
    for key, item in value.items():
      words = re.sub(r"[_\-]+", " ", _split_camel(str(key))).lower()
      if (pattern.search(words) and not _is_empty(item)) or _structured_error(item, pattern):
        return True
    return False
  if isinstance(value, (list, tuple)):
    return any(_structured_error(item, pattern) for item in value)
  return False


def _is_empty(value: Any) -> bool:
  if value is None or isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value == 0
  if isinstance(value, str):
    return value.strip().lower() in _EMPTY_STRINGS
  if isinstance(value, dict):
    return all(_is_empty(item) for item in value.values())
  if isinstance(value, (list, tuple, set)):
    return all(_is_empty(item) for item in value)
  return False


def _closing_bracket(text: str, start: int) -> int | None:
  """Index of the bracket closing the one at `start`, skipping quoted strings."""
  depth, quote, escaped = 0, "", False
  for i in range(start, len(text)):
    char = text[i]
    if quote:
      if escaped:
        escaped = False
      elif char == "\\":
        escaped = True
      elif char == quote:
        quote = ""
    elif char in "\"'":
      quote = char
    elif char in "[{":
      depth += 1
    elif char in "]}":
      depth -= 1
      if depth == 0:
        return i
  return None


def _parameter_names(parameters: Any) -> tuple[str, ...]:
  names = []
  if isinstance(parameters, dict):
    properties = parameters.get("properties")
    if isinstance(properties, dict):
      names += [str(name) for name in properties]
    for key in ("required", "optional"):
      listed = parameters.get(key)
      if isinstance(listed, list):
        names += [name for name in listed if isinstance(name, str)]
  elif isinstance(parameters, list):
    names += [
      p["name"] for p in parameters if isinstance(p, dict) and isinstance(p.get("name"), str)
    ]
  return tuple(dict.fromkeys(names))


def _one_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_records(
  path: str,
  records: Iterable[tuple[int, Any]],
  parse: Callable[[Any, str], Trajectory],
  skip_malformed: bool,
) -> ReadResult:
  trajectories, skipped = [], 0
  for index, record in records:
    try:
      trajectories.append(parse(record, f"{os.path.basename(path)}:{index}"))
    except ValueError as e:
      if not skip_malformed:
        raise ValueError(f"{path} record {index}: {_one_line(e)}") from None
      skipped += 1
  return ReadResult(trajectories, skipped)


def _record_id(record: dict[str, Any], default: str) -> str:
  value = record.get("id", default)
  if not isinstance(value, (str, int)) or isinstance(value, bool):
    raise ValueError(f"'id' is {type(value).__name__}, not a string or integer")
  return str(value)


def _jsonl_trajectory(line: bytes, default_id: str) -> Trajectory:
  try:
    record = json.loads(line)
  except (ValueError, RecursionError) as e:
    raise ValueError(f"malformed JSON ({_one_line(e)})") from None
  if not isinstance(record, dict):
    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
  for key, kind in (("messages", list), ("tools", dict)):
    if not isinstance(record.get(key), kind):
      raise ValueError(f"missing or non-{kind.__name__} {key!r}")
  tools = {}
  for name, parameters in record["tools"].items():
    if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
      raise ValueError(f"tool {name!r}: parameters are not a list of strings")
    tools[name] = tuple(parameters)
  messages = []
  for n, message in enumerate(record["messages"]):
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
      raise ValueError(f"message {n} is not an object with 'role' and 'content'")
    try:
      messages.append(Message(message["role"], message["content"]))
    except ValueError as e:
      raise ValueError(f"message {n}: {e}") from None
  return Trajectory(tuple(messages), tools, _record_id(record, default_id))


def _conversation_trajectory(item: Any, default_id: str) -> Trajectory:
  if not isinstance(item, dict):
    raise ValueError(f"expected a JSON object, got {type(item).__name__}")
  turns = item.get("conversations")
  if not isinstance(turns, list):
    raise ValueError("missing or non-list 'conversations'")
  messages, answers = [], ()
  for n, turn in enumerate(turns):
    if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or "value" not in turn:
      raise ValueError(f"conversation {n} is not an object with string 'from' and a 'value'")
    role = CONVERSATION_ROLES.get(turn["from"])
    if role is None:
      raise ValueError(f"conversation {n}: unknown speaker {turn['from']!r}")
    value = turn["value"]
    if isinstance(value, list) and n == len(turns) - 1 and role == "Assistant":
      if not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"conversation {n}: answer list is empty or holds non-strings")
      answers, value = tuple(value), value[0]
    elif not isinstance(value, str):
      raise ValueError(f"conversation {n}: 'value' is {type(value).__name__}, not a string")
    messages.append(Message(role, value))
  system = next((m.content for m in messages if m.role == "System"), "")
  return Trajectory(
    tuple(messages), tools_from_system_prompt(system), _record_id(item, default_id), answers
  )
