"""The synthetic tool-use task: gold calls decided by the request and declarations at every noise
level, the names each level declares, adverse trajectories MAE recognizes, key tokens between
look-alike names (bytes and the task's word tokenizer), files the readers and the scorer take,
and what shallow rules score."""

import json

import numpy as np
import pytest

from jaxlab.data import key_tokens
from jaxlab.data import tool_task as tt
from jaxlab.data.tokenizers import ByteTokenizer, WordTokenizer
from jaxlab.data.tool_calls import parse_call
from jaxlab.data.tool_use import (
  call_name_span,
  is_error_output,
  read_jsonl,
  sft_examples,
  tokenize_examples,
)
from jaxlab.eval.tool_use import read_gold_set, score
from jaxlab.objectives.tl import Category, call_category

TASK = tt.ToolTask()


@pytest.fixture(scope="module")
def tests_by_level():
  return {
    level: TASK.test_trajectories(level, 300, np.random.default_rng([0, i]))
    for i, level in enumerate(tt.LEVELS)
  }


@pytest.fixture(scope="module")
def train():
  return TASK.train_trajectories(600, np.random.default_rng(0))


def _edit_distance(a: str, b: str) -> int:
  row = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    previous, row[0] = row[0], i
    for j, y in enumerate(b, 1):
      previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
  return row[-1]


def test_the_gold_call_follows_from_the_request_and_the_declarations(tests_by_level):
  for level, items in tests_by_level.items():
    for item in items:
      gold = item.messages[-1].content
      assert [m.role for m in item.messages] == ["System", "User", "Assistant"]
      assert tt.solve(item) == gold, (level, item.id)
      assert call_category(gold, gold, item.tools) is Category.CORRECT
      assert len(item.tools) == TASK.tools_per_item


def _drawn_form(declared: tt.Declared) -> bool:
  """A name as training draws it: a prefix of PREFIXES, the canonical suffix, pool parameters."""
  prefix, _, suffix = declared.name.partition("_")
  pools = [tt.PARAM_NAMES[p] for p in declared.family.params]
  return (
    prefix in tt.PREFIXES
    and suffix == declared.family.suffix
    and all(p in pool for p, pool in zip(declared.params, pools))
  )


def test_each_level_declares_its_names(tests_by_level):
  for item in tests_by_level["clean"]:
    assert set(item.tools) <= set(tt.FAMILY_BY_NAME)
    for name, params in item.tools.items():
      assert params == tt.FAMILY_BY_NAME[name].params
  for item in tests_by_level["renamed"]:
    declared = tt.parse_declarations(item.messages[0].content)
    assert all(_drawn_form(d) for d in declared)
    prefixes = {d.family.prefix: d.name.partition("_")[0] for d in declared}
    assert not set(prefixes.values()) & {"get", "search"}  # never the canonical word
    assert len(set(prefixes.values())) == len(prefixes)  # get and search tools differ
    assert not {p for d in declared for p in d.params} & set(tt.PARAM_NAMES)
  for item in tests_by_level["misspelled"]:
    for declared in tt.parse_declarations(item.messages[0].content):
      assert _edit_distance(declared.name, declared.family.name) == 1
      for noisy, canonical in zip(declared.params, declared.family.params):
        assert _edit_distance(noisy, canonical) == 1
  for item in tests_by_level["swapped"]:
    declared = tt.parse_declarations(item.messages[0].content)
    names = sorted(d.name for d in declared)
    assert names == sorted(d.family.name for d in declared)  # exchanged among the item's tools
    assert all(d.name != d.family.name for d in declared)
    params = {p for d in declared for p in d.family.params}
    assert {p for d in declared for p in d.params} == params


def test_drawn_names_are_word_tokens_and_misspelled_ones_bytes(tests_by_level):
  tokenizer = WordTokenizer(tt.vocabulary())
  for level in ("clean", "renamed", "swapped"):
    for item in tests_by_level[level][:50]:
      for name in item.tools:
        assert all(
          tokenizer.decode([i]) in tt.vocabulary() or i == ord("_") + 3
          for i in tokenizer.encode(name)
        ), name
  item = tests_by_level["misspelled"][0]
  name = next(iter(item.tools))
  assert any(i < ByteTokenizer.vocab_size and chr(i - 3).isalpha() for i in tokenizer.encode(name))


def test_request_templates_are_unambiguous_and_values_are_copied(tests_by_level):
  for item in tests_by_level["clean"][:100]:
    family, args = tt.parse_request(item.messages[1].content)
    call = parse_call(item.messages[-1].content)
    assert call.name == family.name and call.arguments == args
    assert all(isinstance(v, int) == (k in tt.INT_PARAMS) for k, v in args.items())


def test_adverse_trajectories_fail_first_and_mae_drops_only_the_failed_calls(train):
  adverse = [t for t in train if len(t.messages) == 6]
  assert 0.18 < len(adverse) / len(train) < 0.32  # adverse_share 0.25
  misspelled = [
    t for t in train if not all(map(_drawn_form, tt.parse_declarations(t.messages[0].content)))
  ]
  assert 0.18 < len(misspelled) / len(train) < 0.32  # name_noise_share 0.25
  canonical = [t for t in train if set(t.tools) <= set(tt.FAMILY_BY_NAME)]
  assert 0 < len(canonical) < 0.2 * len(train)  # canonical names are one draw among many
  for t in train:
    outputs = [m for m in t.messages if m.role == "Output"]
    assert [is_error_output(m.content) for m in outputs] == [True] * (len(outputs) - 1) + [False]
    if len(t.messages) == 6:
      wrong, right = t.messages[2].content, t.messages[4].content
      assert call_category(wrong, right, t.tools) not in (Category.CORRECT, Category.FORMAT_ERROR)
  examples, counts = sft_examples(train)
  assert counts.mae_dropped == len(adverse) and counts.kept == len(train)
  assert all(e.target == tt.solve(t) for e, t in zip(examples, train))
  everything, _ = sft_examples(train, error_markers=None)
  assert len(everything) == len(train) + len(adverse)


def test_look_alike_names_make_key_tokens():
  tools = {"get_weekday": ("date",), "get_week_number": ("date",), "get_weather": ("city", "day")}
  target = 'get_week_number(date="Mar 3")'
  ids, weights = key_tokens.target_weights(ByteTokenizer(), target, call_name_span(target), tools)
  key = np.flatnonzero(weights > 1)
  # The first byte, "e" (after get_we, against get_weather) and "_" (after get_week, against
  # get_weekday).
  assert [target[i] for i in key] == ["g", "e", "_"]
  # Non-key: all but the 3 key tokens and the 3 value-closing bytes (two quotes and ")").
  assert weights[key[0]] == pytest.approx((len(ids) - 3 - 3) / 3)
  # With the task's word tokenizer a drawn name is word tokens: the prefix and the suffix word
  # where the three names part ("week" against "weather" and "weekday") are the key tokens.
  tokenizer = WordTokenizer(tt.vocabulary())
  tools = {f"fetch_{name.partition('_')[2]}": params for name, params in tools.items()}
  target = 'fetch_week_number(calendar="Mar 3")'
  ids, weights = key_tokens.target_weights(tokenizer, target, call_name_span(target), tools)
  assert [tokenizer.decode([ids[i]]) for i in np.flatnonzero(weights > 1)] == ["fetch", "week"]


def test_files_round_trip_through_the_readers_and_the_scorer(tmp_path, tests_by_level, train):
  path = tmp_path / "train.jsonl"
  path.write_text("".join(json.dumps(tt.trajectory_record(t)) + "\n" for t in train[:20]))
  assert read_jsonl(str(path)).trajectories == train[:20]
  test = tmp_path / "test.jsonl"
  items = tests_by_level["misspelled"][:20]
  test.write_text("".join(json.dumps(tt.trajectory_record(t)) + "\n" for t in items))
  gold = read_gold_set(str(test))
  assert gold.prompts[0] == f"System: {items[0].messages[0].content}\nUser: " + (
    f"{items[0].messages[1].content}\nAssistant: "
  )
  assert score([parse_call(t.messages[-1].content) for t in items], gold.items)["CF"] == 100.0
  rows, counts = tokenize_examples(sft_examples(train)[0], ByteTokenizer(), 512, pkt=True)
  assert counts.rows == len(train) and counts.truncated == 0


def test_shallow_rules_score_what_the_docstring_says(tests_by_level):
  scores = {level: tt.rule_scores(items) for level, items in tests_by_level.items()}
  for level, by_rule in scores.items():
    assert by_rule["solve"]["CF"] == 100.0
    assert by_rule["canonical_rule"]["TS"] == (100.0 if level == "clean" else 0.0)
  name_rule = [scores[level]["name_rule"]["TS"] for level in tt.LEVELS]
  # Docstring (2,000 items per level): 100, 100, 48.45, 0; these are 300 of them.
  assert name_rule[:2] == [100.0, 100.0] and name_rule[3] == 0.0
  assert abs(name_rule[2] - 48.45) < 8.0


def test_generation_is_deterministic_and_validated():
  a = TASK.train_trajectories(20, np.random.default_rng(5))
  b = TASK.train_trajectories(20, np.random.default_rng(5))
  assert a == b
  exclude = [tt.prompt_key(t.messages[0].content, t.messages[1].content) for t in a]
  tests = TASK.test_trajectories("clean", 50, np.random.default_rng(5), exclude=exclude)
  assert not {tt.prompt_key(t.messages[0].content, t.messages[1].content) for t in tests} & set(
    exclude
  )
  with pytest.raises(ValueError, match="unknown noise level 'loud'"):
    TASK.test_trajectories("loud", 1, np.random.default_rng(0))
  with pytest.raises(ValueError, match="task.adverse_share must be in"):
    tt.ToolTask(adverse_share=1.5).validate()
  with pytest.raises(ValueError, match="task.tools_per_item must be in 1..8"):
    tt.ToolTask(tools_per_item=9).validate()
