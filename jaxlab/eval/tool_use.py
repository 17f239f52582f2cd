"""Tool selection (TS), parameter identification (PI) and content filling (CF) accuracy, in
percent, as RoTBench's published evaluator (Code/Evaluation/evaluate.py) computes them.

An item lists acceptable answers (tool name + arguments). A prediction is right at a level if
some answer passes it, answers tried in order:
  TS: the tool name is the answer's; a predicted `finish` also matches the item's finish tool.
  PI: also the same set of argument names.
  CF: also equal values (Python ==, so 3 == 3.0 and, as in the evaluator, True == 1), after the
      answer's arguments whose value is the string "None" are dropped from both sides; values are
      not compared for the item's free-text tools.
In RoTBench the finish tool is the last declared tool and the free-text tools are the last two
plus any named `finish` or `ask_to_user`: the lists end with ask_to_user and finish, renamed in
the noisy sets, and the evaluator goes by position. jaxlab items have no finish tool (a predicted
`finish` matches only `finish`) and skip values of `finish` and `ask_to_user` only.
Two details follow the evaluator's state across answers, so that scores match published ones: a
predicted `finish` is renamed to the finish tool once an answer with that tool is seen, and the
"None"-valued keys of an answer that reached CF are removed from the prediction for the answers
after it (so a prediction equal to a later answer with such a key can fail CF).

Two file formats, detected from the gold file:
  RoTBench: a JSON list of {"conversations": [{"from", "value"}, ...]}; the tools are the JSON
    list in the first turn (the system prompt), the last value is the answer or a list of
    acceptable answers, each "Thought: ...\\nAction: NAME\\nAction Input: {JSON}". Prediction
    items have the same shape, their last value the model's text; one whose Action Input is not
    a non-empty JSON object is wrong at every level.
  jaxlab: JSONL of {"tools": ..., "messages": [{"role", "content"}, ...]}; the last Assistant
    message is the answer, a call `name(key=value, ...)` (see `parse_call`). Predictions have
    the same shape, their last Assistant message the model's call.

  python -m jaxlab.eval.tool_use --gold GOLD --predictions PRED --out scores.json
  python -m jaxlab.eval.tool_use --gold GOLD --model RUN --predictions PRED --out scores.json
With --model, the run's model writes PRED first (greedy by default), prompted with the messages
before the answer rendered as in SFT: `Role: content` lines, then "Assistant: ".
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jaxlab import fileio
from jaxlab.cli import OneLineParser, decode_json, exit_cleanly_on_interrupt, fail
from jaxlab.data.tool_calls import Call, parse_call
from jaxlab.fileio import write_jsonl_atomic, write_text_atomic

if TYPE_CHECKING:
  from jaxlab.eval.run_loading import LoadedRun

LEVELS = ("TS", "PI", "CF")
# Tools whose argument values CF never compares, whatever the item.
FREE_TEXT_TOOLS = ("finish", "ask_to_user")
# RoTBench speaker names -> jaxlab roles.
SPEAKERS = {"system": "System", "user": "User", "assistant": "Assistant", "function": "Output"}


@dataclasses.dataclass(frozen=True)
class GoldItem:
  """Acceptable answers, in the order they are tried; the tool a predicted `finish` stands for;
  the tools whose argument values CF does not compare."""

  answers: tuple[Call, ...]
  finish_tool: str | None = None
  free_text_tools: frozenset[str] = frozenset(FREE_TEXT_TOOLS)

  @classmethod
  def rotbench(cls, answers: Sequence[Call], tools: Sequence[str]) -> GoldItem:
    """An item whose declared tools are `tools`, in order: RoTBench lists end with ask_to_user
    and finish, renamed in the noisy sets, and the evaluator treats the last two as such."""
    return cls(
      tuple(answers), tools[-1] if tools else None, frozenset([*FREE_TEXT_TOOLS, *tools[-2:]])
    )


@dataclasses.dataclass(frozen=True)
class GoldSet:
  """A gold file: its format ("rotbench" or "jaxlab"), its records (to write predictions in the
  same shape), the items to score and each item's generation prompt."""

  format: str
  records: list[Any]
  items: list[GoldItem]
  prompts: list[str]


def judge(prediction: Call | None, item: GoldItem) -> int:
  """How many levels (0-3: none, TS, TS+PI, TS+PI+CF) `prediction` gets right (module doc)."""
  if prediction is None:
    return 0
  name, arguments = prediction.name, dict(prediction.arguments)
  level = 0
  for answer in item.answers:
    if name == "finish" and answer.name == item.finish_tool:
      name = answer.name
    if answer.name != name:
      continue
    level = max(level, 1)
    if answer.arguments.keys() != arguments.keys():
      continue
    level = max(level, 2)
    dropped = {key for key, value in answer.arguments.items() if value == "None"}
    for key in dropped:
      del arguments[key]
    expected = {key: value for key, value in answer.arguments.items() if key not in dropped}
    if answer.name in item.free_text_tools or expected == arguments:
      return 3
  return level


def score(predictions: Sequence[Call | None], items: Sequence[GoldItem]) -> dict[str, float]:
  """{"TS", "PI", "CF"} in percent of the items, and "n" (the number of items)."""
  if len(predictions) != len(items):
    raise ValueError(f"{len(predictions)} predictions for {len(items)} test items")
  if not items:
    raise ValueError("no test items")
  levels = [judge(p, item) for p, item in zip(predictions, items)]
  scores = {
    name: 100.0 * sum(level > i for level in levels) / len(items) for i, name in enumerate(LEVELS)
  }
  return {**scores, "n": len(items)}


def _react_parts(text: str) -> tuple[str, Any] | None:
  """(name, decoded Action Input) of a RoTBench answer, sliced as the evaluator does: the name
  starts one character (the space) after "Action:" and ends before "Action Input:", less one
  trailing newline; the input is everything one character after "Action Input:"."""
  action, action_input = text.find("Action:"), text.find("Action Input:")
  if action < 0 or action_input < 0:
    return None
  name = text[action + len("Action: ") : action_input].removesuffix("\n")
  try:
    value = decode_json(text[action_input + len("Action Input: ") :])
  except ValueError:
    return None
  return (name, value) if name else None


def parse_react(text: str) -> Call | None:
  """A RoTBench prediction's call, or None when it has no name or its Action Input is not a
  non-empty JSON object (wrong at every level, as in the evaluator)."""
  parts = _react_parts(text)
  if parts is None or not isinstance(parts[1], dict) or not parts[1]:
    return None
  return Call(*parts)


def render_prompt(messages: Sequence[tuple[str, str]]) -> str:
  """(role, content) messages as `Role: content` lines, then "Assistant: " (the SFT context)."""
  return "".join(f"{role}: {content}\n" for role, content in messages) + "Assistant: "


def _rotbench_item(record: Any) -> tuple[GoldItem, str]:
  turns = _rotbench_turns(record)
  if len(turns) < 2:
    raise ValueError("fewer than two turns (a prompt and the answers)")
  tools, answers = _tool_names(turns[0]["value"]), turns[-1]["value"]
  answers = [answers] if isinstance(answers, str) else answers
  if not isinstance(answers, list) or not answers:
    raise ValueError("the last turn is neither an answer nor a non-empty list of answers")
  calls = []
  for n, answer in enumerate(answers):
    parts = _react_parts(answer) if isinstance(answer, str) else None
    if parts is None or not isinstance(parts[1], dict):
      raise ValueError(f"answer {n} is not 'Action: NAME' + 'Action Input: {{JSON object}}'")
    calls.append(Call(*parts))
  messages = []
  for n, turn in enumerate(turns[:-1]):
    if turn["from"] not in SPEAKERS or not isinstance(turn["value"], str):
      raise ValueError(f"turn {n} is not a string from one of {', '.join(SPEAKERS)}")
    messages.append((SPEAKERS[turn["from"]], turn["value"]))
  item = GoldItem.rotbench(calls, tools)
  return item, render_prompt(messages)


def _tool_names(system: Any) -> tuple[str, ...]:
  """Names of the tools in a system prompt: the first JSON list of objects with a "name" (the
  evaluator takes the list at the first "[", which is that list in every RoTBench file)."""
  start = system.find("[") if isinstance(system, str) else -1
  while start >= 0:
    try:
      tools, _ = json.JSONDecoder().raw_decode(system, start)
    except (ValueError, RecursionError):
      tools = None
    if isinstance(tools, list) and all(
      isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools
    ):
      return tuple(t["name"] for t in tools)
    start = system.find("[", start + 1)
  raise ValueError("the first turn has no JSON list of tools")


def _rotbench_turns(record: Any) -> list[dict]:
  turns = record.get("conversations") if isinstance(record, dict) else None
  if not isinstance(turns, list) or not turns:
    raise ValueError("no 'conversations' list of turns")
  if not all(isinstance(t, dict) and {"from", "value"} <= t.keys() for t in turns):
    raise ValueError("a turn is not an object with 'from' and 'value'")
  return turns


def _answer_index(record: Any) -> int:
  """Index of the last Assistant message of a jaxlab record."""
  messages = record.get("messages") if isinstance(record, dict) else None
  if not isinstance(messages, list) or not all(
    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
    for m in messages
  ):
    raise ValueError("no 'messages' list of objects with string 'role' and 'content'")
  for index in range(len(messages) - 1, -1, -1):
    if messages[index]["role"] == "Assistant":
      return index
  raise ValueError("no Assistant message")


def _jaxlab_item(record: Any) -> tuple[GoldItem, str]:
  index = _answer_index(record)
  messages = record["messages"]
  answer = parse_call(messages[index]["content"])
  if answer is None:
    raise ValueError(f"the answer is not a call: {messages[index]['content'][:100]!r}")
  prompt = render_prompt([(m["role"], m["content"]) for m in messages[:index]])
  return GoldItem((answer,)), prompt


def _read_records(path: str) -> tuple[str, list[Any]]:
  """(format, records) of a RoTBench JSON list or a jaxlab JSONL file."""
  text = fileio.read_text(path)
  if text.lstrip()[:1] == "[":
    return "rotbench", decode_json(text)  # JSON that starts with "[" is a list or an error
  lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
  records = []
  for n, line in lines:
    try:
      records.append(decode_json(line))
    except ValueError as e:
      raise ValueError(f"line {n}: {e}") from None
  return "jaxlab", records


def read_gold_set(path: str) -> GoldSet:
  """The gold items of `path`; a malformed item raises a one-line ValueError naming it."""
  try:
    fmt, records = _read_records(path)
    read = _rotbench_item if fmt == "rotbench" else _jaxlab_item
    items, prompts = [], []
    for n, record in enumerate(records):
      try:
        item, prompt = read(record)
      except ValueError as e:
        raise ValueError(f"record {n}: {e}") from None
      items.append(item)
      prompts.append(prompt)
    if not items:
      raise ValueError("no test items")
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  return GoldSet(fmt, records, items, prompts)


def _prediction_text(record: Any, fmt: str) -> str:
  if fmt == "jaxlab":
    return record["messages"][_answer_index(record)]["content"]
  text = _rotbench_turns(record)[-1]["value"]
  if not isinstance(text, str):
    raise ValueError("the last turn's value is not a string")
  return text


def read_predictions(path: str, gold_set: GoldSet) -> list[Call | None]:
  """The predicted calls of `path` (in `gold_set`'s format and order); None where the text is
  not a call. A file of another format or length raises a one-line ValueError."""
  try:
    fmt, records = _read_records(path)
    if fmt != gold_set.format:
      raise ValueError(f"{fmt} format, but the gold file is {gold_set.format}")
    if len(records) != len(gold_set.records):
      raise ValueError(f"{len(records)} predictions for {len(gold_set.records)} test items")
    parse = parse_react if fmt == "rotbench" else parse_call
    calls = []
    for n, record in enumerate(records):
      try:
        calls.append(parse(_prediction_text(record, fmt)))
      except ValueError as e:
        raise ValueError(f"record {n}: {e}") from None
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  return calls


def write_predictions(path: str, gold_set: GoldSet, texts: Sequence[str]) -> None:
  """The gold records with each answer replaced by the generated text, atomically."""
  records = copy.deepcopy(gold_set.records)
  for record, text in zip(records, texts):
    if gold_set.format == "rotbench":
      record["conversations"][-1]["value"] = text
    else:
      record["messages"][_answer_index(record)]["content"] = text
  if gold_set.format == "rotbench":
    write_text_atomic(path, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
  else:
    write_jsonl_atomic(path, records)


def generate_predictions(
  run: LoadedRun,
  prompts: Sequence[str],
  *,
  max_new_tokens: int,
  batch_size: int = 16,
  temperature: float = 0.0,
  seed: int = 0,
) -> tuple[list[str], int]:
  """(the model's text for each prompt, how many prompts were cut), with the shared sampler.

  As in SFT rows, a prompt is [BOS] + its tokens cut from the left so that it and
  `max_new_tokens` fit the model's max_seq_len. Prompts of similar length share a batch; every
  batch has `batch_size` rows, so shapes (and compilations) repeat. Single-host.
  """
  import jax  # the model stack loads only when generating: scoring alone starts in no time

  from jaxlab.sampling import left_pad, sample

  tokenizer = run.tokenizer
  room = run.model_cfg.max_seq_len - max_new_tokens - 1
  if room < 1:
    raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt")
  ids = [tokenizer.encode(p) for p in prompts]
  cut = sum(len(p) > room for p in ids)
  encoded = [[tokenizer.bos_id, *p[-room:]] for p in ids]
  order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
  batch_size = max(1, min(batch_size, len(prompts)))
  texts = [""] * len(prompts)
  rng = jax.random.key(seed)
  with run.context():
    for start in range(0, len(order), batch_size):
      rows = order[start : start + batch_size]
      batch = [encoded[i] for i in rows] + [encoded[rows[-1]]] * (batch_size - len(rows))
      length = -(-max(map(len, batch)) // 32) * 32
      tokens, mask = left_pad(batch, tokenizer.pad_id, length)
      out = sample(
        run.params,
        run.model_cfg,
        tokens,
        mask,
        jax.random.fold_in(rng, start),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
      )
      generated, lengths = jax.device_get((out.tokens, out.lengths))
      for i, row, n in zip(rows, generated, lengths):
        texts[i] = tokenizer.decode(row[:n].tolist())
  return texts, cut


@exit_cleanly_on_interrupt()
def main(argv: Sequence[str] | None = None) -> int:
  parser = OneLineParser(description="RoTBench TS / PI / CF accuracy of tool-call predictions.")
  parser.add_argument("--gold", required=True, help="RoTBench JSON or jaxlab JSONL test items")
  parser.add_argument("--predictions", required=True, help="read; written first with --model")
  parser.add_argument("--out", required=True, help="scores JSON: TS, PI, CF (percent), n")
  parser.add_argument("--model", default=None, help="a jaxlab run that generates the predictions")
  parser.add_argument("--max_new_tokens", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.model and fileio.absolute(args.predictions) == fileio.absolute(args.gold):
    fail("--predictions would overwrite --gold")
  try:
    gold_set = read_gold_set(args.gold)
    if args.model:
      from jaxlab.eval.run_loading import load_run  # see generate_predictions

      texts, cut = generate_predictions(
        load_run(args.model),
        gold_set.prompts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        seed=args.seed,
      )
      if cut:
        print(f"tool_use: {cut} prompts cut from the left to fit", file=sys.stderr)
      write_predictions(args.predictions, gold_set, texts)
    scores = score(read_predictions(args.predictions, gold_set), gold_set.items)
  except (ValueError, OSError) as e:
    fail(str(e))
  write_text_atomic(args.out, json.dumps(scores) + "\n")
  summary = ", ".join(f"{name} {scores[name]:.2f}" for name in LEVELS)
  print(f"tool_use: {summary} over {scores['n']} items -> {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
