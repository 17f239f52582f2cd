import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data.key_tokens import is_para_text, key_weight, target_weights
from jaxlab.data.tokenizers import ByteTokenizer, HFTokenizer
from jaxlab.data.tool_use import (
  Message,
  Trajectory,
  call_name_span,
  sft_examples,
  tokenize_examples,
)
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.objectives.lm import LanguageModelObjective


class PieceTokenizer:
  """Greedy longest match over a few word pieces; other characters are one token each."""

  pad_id, bos_id, eos_id = 0, 1, 2
  PIECES = ["get_", "weather", "week", "day", "time", "search", "(", ")", "city", "=", '"', '")']
  PIECES += ["Paris"]

  def encode(self, text):
    ids, i = [], 0
    while i < len(text):
      matches = [p for p in self.PIECES if text.startswith(p, i)]
      piece = max(matches, key=len) if matches else text[i]
      ids.append(self.PIECES.index(piece) + 3 if matches else 1000 + ord(piece))
      i += len(piece)
    return ids

  def decode(self, ids):
    return "".join(self.PIECES[i - 3] if i < 1000 else chr(i - 1000) for i in ids if i > 2)


def test_word_pieces_by_hand():
  tokenizer = PieceTokenizer()
  target = 'get_weather(city="Paris")'
  ids, weights = target_weights(
    tokenizer, target, (0, 11), ["get_weather", "get_weekday", "get_time", "search"]
  )
  # get_ | weather | ( | city | = | " | Paris | ") | EOS: 9 tokens.
  assert [tokenizer.decode([i]) for i in ids[:-1]] == [
    "get_", "weather", "(", "city", "=", '"', "Paris", '")'
  ]  # fmt: skip
  # K: "get_" (first name token) and "weather" (get_weekday and get_time share "get_" and part
  # from the gold name at offset 1); search shares nothing. N_key = 2.
  # para after the name: '"' and '")'. N_nonkey = 9 - 2 - 2 = 5: ( city = Paris EOS.
  # w = min(5 / 2, 9) = 2.5.
  np.testing.assert_array_equal(weights, [2.5, 2.5, 1, 1, 1, 1, 1, 1, 1])
  assert weights.dtype == np.float32


def test_divergence_after_the_whole_name_is_the_token_that_ends_it():
  tokenizer = PieceTokenizer()
  _, weights = target_weights(tokenizer, 'get_week(day="Paris")', (0, 8), ["get_weekday"])
  # get_ | week | ( | day | = | " | Paris | ") | EOS. get_weekday gives get_ | week | day | (:
  # the names part at offset 2, where the gold token is "(". K = {0, 2}, para = 2 (" and "),
  # N_nonkey = 9 - 2 - 2 = 5, w = 2.5.
  np.testing.assert_array_equal(weights, [2.5, 1, 2.5, 1, 1, 1, 1, 1, 1])


def test_key_tokens_not_outnumbered_keep_weight_one():
  # search | EOS: K = {search}, N_nonkey = 1 (EOS) is not more than N_key = 1.
  _, weights = target_weights(PieceTokenizer(), "search", (0, 6), ["get_weather"])
  np.testing.assert_array_equal(weights, [1, 1])


@pytest.mark.parametrize(
  "num_key, num_nonkey, expected",
  [(2, 5, 2.5), (2, 21, 9.0), (1, 100, 9.0), (2, 2, 1.0), (3, 1, 1.0), (0, 4, 1.0)],
)
def test_key_weight(num_key, num_nonkey, expected):
  assert key_weight(num_key, num_nonkey) == expected


def test_key_weight_cap_is_configurable():
  assert key_weight(2, 21, w_max=20.0) == 10.5


@pytest.mark.parametrize("text", ['"', '")', ")", ",", ' ",', "})", "'] "])
def test_para_texts(text):
  assert is_para_text(text)


@pytest.mark.parametrize("text", ["", " ", "(", '="', "a)", '"Paris', "\n"])
def test_non_para_texts(text):
  assert not is_para_text(text)


def test_byte_tokenizer_get_weather_against_get_weekday():
  tokenizer = ByteTokenizer()
  target = 'get_weather(city="Paris")'
  tools = ["get_weather", "get_weekday", "search"]
  ids, weights = target_weights(tokenizer, target, (0, 11), tools)
  assert ids == [b + 3 for b in target.encode()] + [2]
  # 25 bytes + EOS = 26 tokens. K = {0 ("g"), 6 ("a", where "get_we" + "a" parts from
  # "get_we" + "k")}. para: the two quote bytes and ")" = 3. N_nonkey = 26 - 2 - 3 = 21,
  # w = min(21 / 2, 9) = 9.
  expected = np.ones(26, np.float32)
  expected[[0, 6]] = 9.0
  np.testing.assert_array_equal(weights, expected)
  _, uncapped = target_weights(tokenizer, target, (0, 11), tools, w_max=20.0)
  assert sorted(np.flatnonzero(uncapped != 1).tolist()) == [0, 6]
  assert uncapped[0] == 10.5


def test_byte_tokenizer_react_format():
  tokenizer = ByteTokenizer()
  target = 'Thought: check\nAction: get_weekday\nAction Input: {"day": "mon"}'
  span = call_name_span(target)
  assert span == (23, 34)
  _, weights = target_weights(tokenizer, target, span, ["get_weather", "get_weekday"])
  # 63 bytes + EOS = 64 tokens; K = {23, 29}; para after the name: four quotes and "}" = 5;
  # N_nonkey = 64 - 2 - 5 = 57, w = min(28.5, 9) = 9.
  assert np.flatnonzero(weights != 1).tolist() == [23, 29]
  assert weights[23] == weights[29] == 9.0


def test_no_call_means_plain_weights():
  ids, weights = target_weights(ByteTokenizer(), "It is sunny.", None, ["get_weather"])
  assert len(ids) == 13 and ids[-1] == 2
  np.testing.assert_array_equal(weights, np.ones(13))


def test_bpe_tokenizer_key_tokens_start_the_name_and_its_divergence(hf_tokenizer_json):
  tokenizer = HFTokenizer(hf_tokenizer_json)
  target = 'Thought: the weather\nAction: get_weather\nAction Input: {"city": "Paris"}'
  ids, weights = target_weights(
    tokenizer, target, call_name_span(target), ["get_weather", "get_weekday"]
  )
  assert ids[:-1] == tokenizer.encode(target) and ids[-1] == tokenizer.eos_id
  # The key tokens hold the name's first character and the one where get_weather parts from
  # get_weekday (offset 6), whatever pieces the BPE merged them into.
  start = target.index("get_weather")
  key = np.flatnonzero(weights > 1).tolist()
  assert len(key) == 2 and weights[key[0]] == weights[key[1]] > 1
  for position, char_index in zip(key, [start, start + 6]):
    assert len(tokenizer.decode(ids[:position])) <= char_index
    assert len(tokenizer.decode(ids[: position + 1])) > char_index


def test_pkt_weights_give_the_same_loss_fused_and_unfused_and_match_numpy():
  tokenizer = ByteTokenizer()
  tools = {"get_weather": ("city",), "get_weekday": ("date",)}
  trajectory = Trajectory(
    (
      Message("User", "Paris?"),
      Message("Assistant", 'get_weather(city="Paris")'),
      Message("Output", "sunny"),
      Message("Assistant", 'get_weekday(date="now")'),
    ),
    tools,
  )
  examples, _ = sft_examples([trajectory])
  batch, counts = tokenize_examples(examples, tokenizer, seq_len=48, pkt=True)
  assert counts.rows == 2 and set(batch["loss_weights"].ravel().tolist()) == {0.0, 1.0, 9.0}
  cfg = TransformerConfig(
    vocab_size=264, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64, scan_layers=False
  )
  # Random parameters of the model's shapes: no init program to compile.
  shapes = jax.eval_shape(Transformer(cfg).init, jax.random.PRNGKey(0), jnp.zeros((1, 8), int))
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), nn.unbox(shapes)["params"]
  )
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  losses = {}
  for impl in ("xla", "fused"):
    model = Transformer(dataclasses.replace(cfg, loss_impl=impl))
    loss = jax.jit(lambda p, b, m=model: LanguageModelObjective(m)(p, {}, {}, b, None, False))
    out = loss(params, batch)
    losses[impl] = float(out.loss_sum / out.weight_sum)
  logits, _ = jax.jit(Transformer(cfg).apply)(
    {"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"]
  )
  logits = np.asarray(logits, np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets, weights = np.asarray(batch["targets"]), np.asarray(batch["loss_weights"])
  ce = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  expected = (weights * ce).sum() / weights.sum()
  np.testing.assert_allclose(losses["xla"], expected, rtol=1e-5)
  np.testing.assert_allclose(losses["fused"], expected, rtol=1e-5)
  unweighted = (ce * (weights > 0)).sum() / (weights > 0).sum()
  assert abs(expected - unweighted) > 1e-4  # the key-token weights change the loss
