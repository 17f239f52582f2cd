"""Encoding preference pairs: response rows weigh exactly the response and its EOS, judge
prompts are left-padded in both orders, and pairs that do not fit are left out."""

from __future__ import annotations

import re

import numpy as np
import pytest

from jaxlab.data.preferences import (
  PairEncoder,
  check_judge_template,
  render_judge_prompt,
  verdict_token_ids,
)
from jaxlab.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
TEMPLATE = "Q {prompt} A:{response_a} B:{response_b} ?"


def test_render_fills_each_placeholder_once_and_leaves_text_alone():
  text = render_judge_prompt(TEMPLATE, "x{response_b}", "{prompt}", "b")
  assert text == "Q x{response_b} A:{prompt} B:b ?"


@pytest.mark.parametrize(
  "template, message",
  [
    ("{prompt} {response_a}", "must contain {response_b} exactly once (it has 0)"),
    (
      "{prompt} {response_a} {response_b} {prompt}",
      "must contain {prompt} exactly once (it has 2)",
    ),
  ],
)
def test_bad_templates_are_one_line(template, message):
  with pytest.raises(ValueError, match=re.escape(message)) as e:
    check_judge_template(template)
  assert "\n" not in str(e.value)


def test_verdicts_must_be_single_distinct_tokens():
  assert verdict_token_ids(TOK, ("A", "B")) == (ord("A") + 3, ord("B") + 3)
  with pytest.raises(ValueError, match="'AB' encodes to 2 tokens"):
    verdict_token_ids(TOK, ("AB", "B"))
  with pytest.raises(ValueError, match="two different strings"):
    verdict_token_ids(TOK, ("A", "A"))


def test_response_rows_weigh_the_response_and_eos_only():
  rows = PairEncoder(TOK, 12, 32, TEMPLATE).response_rows("ab", ["xyz", "q"])
  ids = [TOK.bos_id] + TOK.encode("abxyz") + [TOK.eos_id]
  np.testing.assert_array_equal(rows["inputs"][0, :6], ids[:-1])
  np.testing.assert_array_equal(rows["targets"][0, :6], ids[1:])
  # Targets "x", "y", "z", EOS are predicted at positions 2..5.
  assert rows["loss_weights"][0].tolist() == [0, 0, 1, 1, 1, 1] + [0] * 6
  assert rows["loss_weights"][1].tolist() == [0, 0, 1, 1] + [0] * 8
  assert rows["segment_ids"][1].tolist() == [1] * 4 + [0] * 8
  assert rows["positions"][0, :6].tolist() == list(range(6))


def test_judge_rows_are_left_padded_in_both_orders():
  rows = PairEncoder(TOK, 12, 32, TEMPLATE).judge_rows("p", "one", "two")
  for row, (a, b) in enumerate((("one", "two"), ("two", "one"))):
    ids = [TOK.bos_id] + TOK.encode(f"Q p A:{a} B:{b} ?")
    assert rows["inputs"][row, -len(ids) :].tolist() == ids
    assert rows["segment_ids"][row].tolist() == [0] * (32 - len(ids)) + [1] * len(ids)
    assert rows["positions"][row, -len(ids) :].tolist() == list(range(len(ids)))


def test_encode_leaves_out_pairs_that_do_not_fit():
  encoder = PairEncoder(TOK, 8, 24, TEMPLATE)
  arrays, kept = encoder.encode([("p", "ok", "no"), ("p", "far too long", "x"), ("p", "a", "b")])
  assert kept.tolist() == [0, 2]
  assert arrays["pair_inputs"].shape == (2, 2, 8) and arrays["judge_inputs"].shape == (2, 2, 24)
  assert arrays["pair_weight"].tolist() == [1.0, 1.0]
  with pytest.raises(ValueError, match="none of 1 pairs fits seq_len=8"):
    encoder.encode([("p", "far too long", "x")])
  empty, kept = encoder.encode([])
  assert len(kept) == 0 and empty["pair_inputs"].shape == (0, 2, 8)
  assert (
    empty["judge_positions"].shape == (0, 2, 24) and empty["pair_loss_weights"].dtype == np.float32
  )
