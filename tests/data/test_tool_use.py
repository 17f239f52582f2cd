import json

import numpy as np
import pytest

from jaxlab.data import key_tokens
from jaxlab.data.source import ArraySource
from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.data.tool_use import (
  Message,
  Trajectory,
  call_name_span,
  is_error_output,
  parse_action,
  read_conversations,
  read_jsonl,
  render,
  sft_examples,
  tokenize_examples,
  tools_from_system_prompt,
)

TOOLS = {"get_weather": ("city",), "get_weekday": ("date",)}


def _trajectory(*turns, tools=TOOLS, id="t"):
  return Trajectory(tuple(Message(role, content) for role, content in turns), tools, id)


def test_render_and_one_example_per_assistant_turn():
  trajectory = _trajectory(
    ("System", "tools"),
    ("User", "weather?"),
    ("Assistant", 'get_weather(city="Paris")'),
    ("Output", "sunny"),
    ("Assistant", 'finish(answer="sunny")'),
  )
  assert render(trajectory.messages[:2]) == "System: tools\nUser: weather?"
  examples, counts = sft_examples([trajectory])
  assert [(e.context, e.target, e.turn) for e in examples] == [
    ("System: tools\nUser: weather?\nAssistant: ", 'get_weather(city="Paris")', 2),
    (
      'System: tools\nUser: weather?\nAssistant: get_weather(city="Paris")\nOutput: sunny'
      "\nAssistant: ",
      'finish(answer="sunny")',
      4,
    ),
  ]
  assert (counts.kept, counts.mae_dropped, counts.chitchat) == (2, 0, 0)
  assert examples[0].tools == TOOLS and examples[0].trajectory_id == "t"


def test_chitchat_turns_are_not_targets_but_the_last_turn_always_is():
  trajectory = _trajectory(
    ("User", "hi"),
    ("Assistant", "Hello! Which city?"),  # answered by the user: chit-chat
    ("User", "Paris"),
    ("Assistant", 'get_weather(city="Paris")'),
    ("Output", "sunny"),
    ("Assistant", "It is sunny."),
    ("User", "thanks"),  # the last assistant turn is a target even so
  )
  examples, counts = sft_examples([trajectory])
  assert [e.turn for e in examples] == [3, 5]
  assert (counts.kept, counts.mae_dropped, counts.chitchat) == (2, 0, 1)
  assert examples[0].context == "User: hi\nAssistant: Hello! Which city?\nUser: Paris\nAssistant: "


def test_an_assistant_turn_first_has_the_bare_prompt_as_context():
  examples, _ = sft_examples([_trajectory(("Assistant", "x()"))])
  assert examples[0].context == "Assistant: "


def test_mae_drops_failed_calls_from_the_loss_but_keeps_them_in_later_contexts():
  trajectory = _trajectory(
    ("User", "weather in Pariss?"),
    ("Assistant", 'get_weather(city="Pariss")'),
    ("Output", "Error: city not found"),
    ("Assistant", 'get_weather(city="Paris")'),
    ("Output", "sunny"),
    ("Assistant", 'get_weekday(date="today")'),
    ("Output", '{"error": "rate limited"}'),  # the last turn is kept although it failed
  )
  examples, counts = sft_examples([trajectory, trajectory])
  assert [e.turn for e in examples] == [3, 5, 3, 5]
  assert (counts.kept, counts.mae_dropped, counts.chitchat) == (4, 2, 0)
  assert 'Assistant: get_weather(city="Pariss")\nOutput: Error: city not found\n' in (
    examples[0].context
  )
  _, without_mae = sft_examples([trajectory], error_markers=None)
  assert (without_mae.kept, without_mae.mae_dropped) == (3, 0)
  _, custom = sft_examples([trajectory], error_markers=["not found"])
  assert (custom.kept, custom.mae_dropped) == (2, 1)


@pytest.mark.parametrize(
  "output",
  [
    "Error: city not found",
    "ERROR 500",
    '{"error": "rate limited"}',
    "{'error': 'rate limited'}",  # a Python dict repr
    '{"error_code": 404}',
    '{"errors": [{"code": "DIS1004"}]}',
    '{"status": 200, "response": [{"errorMessage": "Invalid Domain"}]}',
    '"Connection error"',
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "IsADirectoryError: [Errno 21]",
    "f() missing 2 required positional arguments: 'a' and 'b'",
    "f() got an unexpected keyword argument 'x'",
    "name 'foo' is not defined",
    "Traceback (most recent call last):",
    '{"error": "timeout", "data": "truncated',  # not JSON: read as text
    '{"detail": "x", "error": "Failed',
  ],
)
def test_error_outputs(output):
  assert is_error_output(output)


@pytest.mark.parametrize(
  "output",
  [
    "sunny",
    "The war on terrorism",
    "Errorless and terrors",
    '{"error_code": 0}',
    '{"error": ""}',
    '{"error": null}',
    "{'error': None}",
    '{"errors": [], "results": 0}',
    '{"status": {"error_code": 0, "error_message": null, "notice": null}}',
    '{"error": {"code": 0, "message": ""}}',
    '{"text": "an error in the article text is data"}',  # string values are not searched
    '[{"title": "Exceptions in Python", "error_rate": 0.0}]',
    '{"error": "", "response": "truncated',  # not JSON, but the empty error pair is ignored
    "error_code=0 written as an identifier",
    "275.0",
    "",
  ],
)
def test_outputs_that_are_not_errors(output):
  assert not is_error_output(output)


def test_markers_are_configurable_and_match_whole_word_sequences():
  assert is_error_output("Quota Exceeded today", ["quota exceeded"])
  assert not is_error_output("quota  exceededly", ["quota exceeded"])
  assert not is_error_output("Error", [])


def test_parse_action():
  text = 'Thought: need weather\nAction: get_weather\nAction Input: {"city": "Paris"}'
  assert parse_action(text) == ("get_weather", {"city": "Paris"})
  assert parse_action("Action: f\nAction Input: {'a': 1}") == ("f", {"a": 1})
  assert parse_action("Thought:\nAction:  finish \nAction Input: {}") == ("finish", {})
  assert parse_action("Action: f\nAction Input: [1]") is None
  assert parse_action("Action: f\nAction Input: {bad") is None
  assert parse_action("Action: \nAction Input: {}") is None
  assert parse_action("The answer is 4.") is None


def test_call_name_span():
  text = "Thought: x\nAction: get_weather\nAction Input: {}"
  start, end = call_name_span(text)
  assert text[start:end] == "get_weather"
  assert call_name_span('  get_weather(city="Paris")') == (2, 13)
  assert call_name_span("It is sunny (mostly).") is None


ROT_SYSTEM = (
  "You are an expert in using tools.\nDesired format:\nThought: <The thought>\nAction: <tool>\n"
  "Action Input: <The parameters for the tool>\n"
  'Remember: the "Action Input" needs to provide a dict similar to {parameter_1: value_1}.\n'
  "Specifically, you have access of the following tools:\n"
  + json.dumps(
    [
      {
        "name": "get_weather",
        "description": "Weather of a city [current]; it's live.",
        "parameters": {
          "type": "object",
          "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
          "required": ["city"],
        },
      },
      {"name": "finish", "parameters": {"properties": {"answer": {"type": "string"}}}},
    ]
  )
  + "\n\nLet's Begin!"
)


def test_tools_from_system_prompts_in_json_and_python_literal_form():
  assert tools_from_system_prompt(ROT_SYSTEM) == {
    "get_weather": ("city", "unit"),
    "finish": ("answer",),
  }
  toolbench = (
    "You are AutoGPT [v2], you can use many tools.\nSpecifically, you have access to the "
    "following APIs: [{'name': 'search_for_x', 'description': \"Search X's [data]\", "
    "'parameters': {'type': 'object', 'properties': {'q': {'type': 'string'}}, "
    "'required': ['q'], 'optional': ['page']}}, {'name': 'Finish', 'parameters': []}]"
  )
  assert tools_from_system_prompt(toolbench) == {"search_for_x": ("q", "page"), "Finish": ()}
  listed = 'Tools: [{"name": "f", "parameters": [{"name": "a"}, {"name": "b"}]}]'
  assert tools_from_system_prompt(listed) == {"f": ("a", "b")}
  assert tools_from_system_prompt("No tools [at all] here.") == {}


def _rotbench_items():
  call = 'Thought:\nAction: get_weather\nAction Input: {"city": "Paris"}'
  return [
    {
      "id": "Turn 1: weather?",
      "conversations": [
        {"from": "system", "value": ROT_SYSTEM},
        {"from": "user", "value": "Weather in Paris?\nBegin!\n"},
        {"from": "assistant", "value": 'Thought:\nAction: get_weather\nAction Input: {"c": 1}'},
        {"from": "function", "value": "get_weather() got an unexpected keyword argument 'c'"},
        {"from": "assistant", "value": [call, call.replace("Paris", "paris")]},
      ],
      "scenario": "RS",
    },
    {
      "conversations": [
        {"from": "system", "value": ROT_SYSTEM},
        {"from": "user", "value": "Paris"},
        {"from": "assistant", "value": call},
      ]
    },
  ]


def _write_json(tmp_path, items, name="rot.json"):
  path = tmp_path / name
  path.write_text(json.dumps(items))
  return str(path)


def test_read_rotbench_conversations(tmp_path):
  path = _write_json(tmp_path, _rotbench_items())
  result = read_conversations(path)
  assert result.skipped == 0 and len(result.trajectories) == 2
  first, second = result.trajectories
  assert [m.role for m in first.messages] == ["System", "User", "Assistant", "Output", "Assistant"]
  assert first.id == "Turn 1: weather?" and second.id == "rot.json:1"
  assert first.tools == {"get_weather": ("city", "unit"), "finish": ("answer",)}
  assert len(first.answers) == 2 and first.messages[-1].content == first.answers[0]
  assert parse_action(first.answers[1]) == ("get_weather", {"city": "paris"})
  assert second.answers == ()
  examples, counts = sft_examples(result.trajectories)
  assert (counts.kept, counts.mae_dropped) == (2, 1)  # the unexpected-keyword call is dropped
  assert examples[0].context.endswith(
    "Output: get_weather() got an unexpected keyword argument 'c'\nAssistant: "
  )


@pytest.mark.parametrize(
  "bad_item, reason",
  [
    ("not an object", "expected a JSON object, got str"),
    ({"dialog": []}, "missing or non-list 'conversations'"),
    (
      {"conversations": [{"from": "tool", "value": "x"}]},
      "conversation 0: unknown speaker 'tool'",
    ),
    (
      {"conversations": [{"from": "user", "value": ["a"]}, {"from": "assistant", "value": "b"}]},
      "conversation 0: 'value' is list, not a string",
    ),
    (
      {"conversations": [{"from": "assistant", "value": []}]},
      "conversation 0: answer list is empty or holds non-strings",
    ),
    ({"conversations": [{"value": "x"}]}, "conversation 0 is not an object with string 'from'"),
  ],
)
def test_malformed_conversations_raise_or_are_skipped(tmp_path, bad_item, reason):
  items = _rotbench_items()
  items.insert(1, bad_item)
  path = _write_json(tmp_path, items)
  with pytest.raises(ValueError) as error:
    read_conversations(path)
  assert str(error.value).startswith(f"{path} record 1: {reason}")
  assert "\n" not in str(error.value)
  result = read_conversations(path, skip_malformed=True)
  assert result.skipped == 1
  assert [t.id for t in result.trajectories] == ["Turn 1: weather?", "rot.json:2"]


def test_a_conversation_file_that_is_not_a_json_list_always_raises(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"conversations": []}')
  with pytest.raises(ValueError, match="expected a JSON list of conversations, got dict"):
    read_conversations(str(path), skip_malformed=True)
  path.write_text("[{")
  with pytest.raises(ValueError, match=r"bad\.json: malformed JSON"):
    read_conversations(str(path), skip_malformed=True)


def _jsonl_record(id, *messages):
  return json.dumps(
    {
      "id": id,
      "tools": {"get_weather": ["city"]},
      "messages": [{"role": r, "content": c} for r, c in messages],
    }
  )


GOOD_LINES = [
  _jsonl_record("a", ("User", "weather?"), ("Assistant", 'get_weather(city="Paris")')),
  _jsonl_record(7, ("System", "s"), ("Assistant", "x()"), ("Output", "ok"), ("Assistant", "y")),
]


def test_read_jsonl(tmp_path):
  path = tmp_path / "traj.jsonl"
  path.write_text(GOOD_LINES[0] + "\n\n" + GOOD_LINES[1] + "\n")
  result = read_jsonl(str(path))
  assert result.skipped == 0
  first, second = result.trajectories
  assert first == _trajectory(
    ("User", "weather?"),
    ("Assistant", 'get_weather(city="Paris")'),
    tools={"get_weather": ("city",)},
    id="a",
  )
  assert second.id == "7" and len(second.messages) == 4


@pytest.mark.parametrize(
  "bad_line, reason",
  [
    ('{"id": "x", "tools": {}', "malformed JSON (Expecting"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"tools": {}}', "missing or non-list 'messages'"),
    ('{"messages": []}', "missing or non-dict 'tools'"),
    ('{"tools": {"f": "city"}, "messages": []}', "tool 'f': parameters are not a list of strings"),
    (
      '{"tools": {}, "messages": [{"role": "Tool", "content": "x"}]}',
      "message 0: unknown role 'Tool'; expected one of System, User, Assistant, Output",
    ),
    (
      '{"tools": {}, "messages": [{"role": "User", "content": 3}]}',
      "message 0: User content is int, not a string",
    ),
    ('{"tools": {}, "messages": [{"role": "User"}]}', "message 0 is not an object with 'role'"),
    ('{"id": [1], "tools": {}, "messages": []}', "'id' is list, not a string or integer"),
  ],
)
def test_malformed_jsonl_records_raise_or_are_skipped(tmp_path, bad_line, reason):
  path = tmp_path / "traj.jsonl"
  path.write_text("\n".join([GOOD_LINES[0], bad_line, GOOD_LINES[1]]) + "\n")
  with pytest.raises(ValueError) as error:
    read_jsonl(str(path))
  assert str(error.value).startswith(f"{path} record 1: {reason}")
  assert "\n" not in str(error.value)
  result = read_jsonl(str(path), skip_malformed=True)
  assert result.skipped == 1 and [t.id for t in result.trajectories] == ["a", "7"]


def test_jsonl_record_index_counts_lines_and_non_utf8_is_malformed(tmp_path):
  path = tmp_path / "traj.jsonl"
  path.write_bytes(b"\n".join([GOOD_LINES[0].encode(), b"", b'{"id": "\xff"}']))
  with pytest.raises(ValueError, match=rf"^{path} record 2: malformed JSON"):
    read_jsonl(str(path))
  assert read_jsonl(str(path), skip_malformed=True).skipped == 1


def _byte_ids(text):
  return [b + 3 for b in text.encode()]


def _example(context_user="hi", target="f(x)"):
  examples, _ = sft_examples([_trajectory(("User", context_user), ("Assistant", target))])
  return examples[0]


def test_tokenized_row_layout():
  tokenizer = ByteTokenizer()
  arrays, counts = tokenize_examples([_example()], tokenizer, seq_len=32)
  context, target = _byte_ids("User: hi\nAssistant: "), _byte_ids("f(x)")
  sequence = [1, *context, *target, 2]  # BOS ... EOS
  length = len(sequence) - 1  # 24 + 1 + 4 + 1 - 1 = 25 real positions
  assert length == 25
  np.testing.assert_array_equal(arrays["inputs"][0], sequence[:-1] + [0] * 7)
  np.testing.assert_array_equal(arrays["targets"][0], sequence[1:] + [0] * 7)
  np.testing.assert_array_equal(arrays["segment_ids"][0], [1] * 25 + [0] * 7)
  np.testing.assert_array_equal(arrays["positions"][0], list(range(25)) + [0] * 7)
  # weight 1 on the 4 target bytes and EOS (targets positions 20..24), 0 elsewhere
  np.testing.assert_array_equal(arrays["loss_weights"][0], [0] * 20 + [1] * 5 + [0] * 7)
  assert {k: v.dtype.name for k, v in arrays.items()} == {
    "inputs": "int32",
    "targets": "int32",
    "segment_ids": "int32",
    "positions": "int32",
    "loss_weights": "float32",
  }
  assert (counts.rows, counts.truncated, counts.too_long) == (1, 0, 0)


def test_long_contexts_are_cut_from_the_left_and_long_targets_raise_or_are_skipped():
  tokenizer = ByteTokenizer()
  long_context = _example(context_user="x" * 100)
  arrays, counts = tokenize_examples([long_context], tokenizer, seq_len=12)
  # 12 positions: BOS + 7 context bytes + 4 target bytes as inputs; EOS is the last target.
  np.testing.assert_array_equal(arrays["inputs"][0], [1, *_byte_ids("stant: "), *_byte_ids("f(x)")])
  np.testing.assert_array_equal(arrays["targets"][0], [*_byte_ids("stant: f(x)"), 2])
  np.testing.assert_array_equal(arrays["loss_weights"][0], [0] * 7 + [1] * 5)
  assert (counts.rows, counts.truncated, counts.too_long) == (1, 1, 0)
  just_fits, _ = tokenize_examples([long_context], tokenizer, seq_len=5)  # target + EOS only
  np.testing.assert_array_equal(just_fits["inputs"][0], [1, *_byte_ids("f(x)")])
  with pytest.raises(ValueError, match=r"^t turn 1: target of 5 tokens with EOS does not fit "):
    tokenize_examples([long_context], tokenizer, seq_len=4)
  arrays, counts = tokenize_examples(
    [long_context, _example()], tokenizer, seq_len=4, skip_too_long=True
  )
  assert arrays["inputs"].shape == (0, 4) and (counts.rows, counts.too_long) == (0, 2)


def test_tokenized_examples_feed_an_array_source_and_carry_pkt_weights():
  tokenizer = ByteTokenizer()
  target = 'get_weather(city="Paris")'
  examples = [_example(target=target), _example(context_user="hello", target=target)]
  arrays, _ = tokenize_examples(examples, tokenizer, seq_len=64, pkt=True, w_max=20.0)
  _, expected = key_tokens.target_weights(tokenizer, target, (0, 11), TOOLS, 20.0)
  row = arrays["loss_weights"][0]
  np.testing.assert_array_equal(row[row != 0], expected)
  assert sorted(set(row.tolist())) == [0.0, 1.0, 10.5]
  batch = next(ArraySource(arrays, global_batch=2, seed=0))
  assert batch["inputs"].shape == (2, 64) and set(batch) == set(arrays)
