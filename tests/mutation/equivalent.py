"""Mutants of `make mutate` that survive without changing behaviour (docs/mutation.md lists them).

An entry names the module, the function (`Class.method` for methods) and the mutant's change:
the stripped source lines it removes and adds, joined by newlines. tests/mutation/summary.py
counts a surviving mutant with exactly that change as equivalent instead of survived.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Equivalent:
  path: str
  function: str
  removed: str
  added: str
  reason: str


_WORD_DECODE = 'return data.decode("utf-8", errors="replace")'
_LOG2_SIZE = "size = math.log2(params) if params > 0 else 0.0"
_REACT = "if action < 0 or action_input < 0:"
_ACTION_INPUT_AT_0 = (
  'with "Action Input:" at 0 the name slice text[action + 8 : 0] is empty, so the original '
  "returns None there too"
)
_ORDER = "order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))"
_BATCHING = (
  "batching is for speed: each left-padded, masked row decodes greedily on its own, as the "
  "comparison with the unbatched sampler in test_tool_use.py checks"
)
_LENGTH = "length = -(-max(map(len, batch)) // 32) * 32"
_PAD = "tokens, mask = left_pad(batch, tokenizer.pad_id, length)"

_INV_FREQ = "inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)"
_SHIFTS = "shifts = jnp.arange(num_bits - 1, -1, -1, dtype=codes.dtype)"
_DEFAULT_FLOAT = (
  "jax's default float (x64 off, as jaxlab runs) is float32: an integer arange divided by a "
  "Python int, and astype(None), give the same float32 values"
)
_SHIFT_DTYPE = (
  "the shifts are 0..num_bits-1 in any integer type; the bits are cast to `dtype` at the end"
)

_CLAMPED = (
  "index 2 of a size-2 axis: jax clamps out-of-bounds indices of a gather, so [:, 2] reads "
  "[:, 1], as the original does"
)

_LAST_AXIS = "on a [B, T] mask, axis +1 is axis -1"
_ROPE_ONLY = (
  "the critic's backbone reads positions only through RoPE, which depends on the distance "
  "between two positions of one segment; a row's own positions and the default arange differ "
  "by a constant within each segment"
)

_SELECTED = (
  "selected = agreed_selection(pred.p_implicit, pred.p_judge, s.tau).astype(jnp.float32) * weight"
)
_JUDGE_ROPE = (
  "the judge reads positions only through RoPE, which depends on distances within a segment; "
  "a judge row's positions (from 0 after its left padding) and the default arange differ by a "
  "constant there"
)

EQUIVALENT: tuple[Equivalent, ...] = (
  Equivalent(
    "jaxlab/smi/metric.py",
    "model_size_term",
    _LOG2_SIZE,
    "size = math.log2(params) if params > 1 else 0.0",
    "for 0 < params <= 1, log2(params) <= 0 fails the same `not size > 0` check as 0.0",
  ),
  Equivalent(
    "jaxlab/smi/fit.py",
    "plot_fit",
    "line_x,",
    "",
    "ax.plot(y) draws y against its indices, [0, 1], which is line_x",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "WordTokenizer.__init__",
    'self._pieces = [piece.encode("ascii") for piece in pieces]',
    'self._pieces = [piece.encode("ASCII") for piece in pieces]',
    "codec names are case-insensitive",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "WordTokenizer.decode",
    _WORD_DECODE,
    'return data.decode(errors="replace")',
    "bytes.decode defaults to UTF-8",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "WordTokenizer.decode",
    _WORD_DECODE,
    'return data.decode("UTF-8", errors="replace")',
    "codec names are case-insensitive",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "HFTokenizer.decode",
    "kept = [int(i) for i in ids if int(i) not in special and int(i) < self.vocab_size]",
    "kept = [int(i) for i in ids if int(i) not in special and int(i) <= self.vocab_size]",
    "the tokenizers library skips ids outside the vocabulary (vocab_size is one) when decoding",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "_tool_names",
    'start = system.find("[") if isinstance(system, str) else -1',
    'start = system.find("[") if isinstance(system, str) else -2',
    "any negative start skips the search loop alike",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "_tool_names",
    "tools = None",
    'tools = ""',
    'after a failed decode "" is as much not a list as None',
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "write_predictions",
    'write_text_atomic(path, json.dumps(records, ensure_ascii=False, indent=1) + "\\n")',
    'write_text_atomic(path, json.dumps(records, ensure_ascii=None, indent=1) + "\\n")',
    "json.dumps only tests ensure_ascii for truth, and None is false like False",
  ),
  Equivalent(
    "jaxlab/objectives/tl.py",
    "json_equal",
    "if isinstance(a, int | float) and isinstance(b, int | float):",
    "if isinstance(a, int | float) or isinstance(b, int | float):",
    "a number (bools are handled above) == any non-number JSON value is False, the fall-through",
  ),
  Equivalent(
    "jaxlab/objectives/tl.py",
    "json_equal",
    "if isinstance(a, str | None) and isinstance(b, str | None):",
    "if isinstance(a, str | None) or isinstance(b, str | None):",
    "a string or None == a value of another JSON type is False, the fall-through",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "_react_parts",
    _REACT,
    "if action < 0 or action_input <= 0:",
    _ACTION_INPUT_AT_0,
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "_react_parts",
    _REACT,
    "if action < 0 or action_input < 1:",
    _ACTION_INPUT_AT_0,
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "batch_size: int = 16,",
    "batch_size: int = 17,",
    "a default no caller uses (main passes --batch_size); greedy outputs do not depend on it",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "seed: int = 0,",
    "seed: int = 1,",
    "a default no caller uses (main passes --seed, default 0)",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    _ORDER,
    "order = sorted(range(len(prompts)), key=None)",
    _BATCHING,
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    _ORDER,
    "order = sorted(range(len(prompts)), )",
    _BATCHING,
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "batch_size = max(1, min(batch_size, len(prompts)))",
    "batch_size = max(2, min(batch_size, len(prompts)))",
    _BATCHING + " (a lone prompt then shares its batch with a copy of itself)",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "ByteTokenizer.decode",
    _WORD_DECODE,
    'return data.decode(errors="replace")',
    "bytes.decode defaults to UTF-8",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "ByteTokenizer.decode",
    _WORD_DECODE,
    'return data.decode("UTF-8", errors="replace")',
    "codec names are case-insensitive",
  ),
  Equivalent(
    "jaxlab/data/tokenizers.py",
    "ByteTokenizer.encode",
    'return [b + self._OFFSET for b in text.encode("utf-8")]',
    'return [b + self._OFFSET for b in text.encode("UTF-8")]',
    "codec names are case-insensitive",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    'texts = [""] * len(prompts)',
    'texts = ["XXXX"] * len(prompts)',
    "placeholders: the batches overwrite every entry",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "for start in range(0, len(order), batch_size):",
    "for start in range(0, len(order), ):",
    _BATCHING + " (overlapping batches write the same texts again)",
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "batch = [encoded[i] for i in rows] + [encoded[rows[-1]]] * (batch_size - len(rows))",
    "batch = [encoded[i] for i in rows] + [encoded[rows[-1]]] * (batch_size + len(rows))",
    _BATCHING + " (more filler rows, whose outputs are dropped)",
  ),
  *(
    Equivalent("jaxlab/eval/tool_use.py", "generate_predictions", old, new, _BATCHING + why)
    for old, new, why in [
      (_LENGTH, "length = None", " (the row length is only padding)"),
      (
        _LENGTH,
        "length = -(-max(map(len, batch)) // 32) * 33",
        " (the row length is only padding)",
      ),
      (_PAD, "tokens, mask = left_pad(batch, tokenizer.pad_id, None)", " (pads to the longest)"),
      (_PAD, "tokens, mask = left_pad(batch, tokenizer.pad_id, )", " (pads to the longest)"),
      (_PAD, "tokens, mask = left_pad(batch, length)", " (masked pad tokens are never read)"),
    ]
  ),
  Equivalent(
    "jaxlab/eval/tool_use.py",
    "generate_predictions",
    "pad_id=tokenizer.pad_id,",
    "",
    "the sampler pads only after a row stops, and row[:n] cuts that off before decoding",
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "rope_tables",
    _INV_FREQ,
    "inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=None) / head_dim)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "rope_tables",
    _INV_FREQ,
    "inv_freq = theta ** (-jnp.arange(0, head_dim, 2, ) / head_dim)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "rope_tables",
    "angles = positions.astype(jnp.float32)[:, :, None] * inv_freq[None, None, :]",
    "angles = positions.astype(None)[:, :, None] * inv_freq[None, None, :]",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "rotate",
    "x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)",
    "x1, x2 = jnp.split(x.astype(None), 2, axis=-1)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "gray_code_bits",
    _SHIFTS,
    "shifts = jnp.arange(num_bits - 1, -1, -1, dtype=None)",
    _SHIFT_DTYPE,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "gray_code_bits",
    _SHIFTS,
    "shifts = jnp.arange(num_bits - 1, -1, -1, )",
    _SHIFT_DTYPE,
  ),
  Equivalent(
    "jaxlab/models/positional.py",
    "grid_coordinates",
    "return np.stack([rows.ravel(), cols.ravel()], axis=-1)",
    "return np.stack([rows.ravel(), cols.ravel()], axis=+1)",
    "stacking two 1-D arrays gives a 2-D result, whose axis -1 is axis 1",
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "response_lengths",
    'return jnp.sum(batch["pair_loss_weights"] != 0, axis=-1).astype(jnp.float32)',
    'return jnp.sum(batch["pair_loss_weights"] != 0, axis=-1).astype(None)',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "chosen_nll",
    "return jnp.where(first_wins, per_token[:, 0], per_token[:, 1])",
    "return jnp.where(first_wins, per_token[:, 0], per_token[:, 2])",
    _CLAMPED,
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "dpo_terms",
    "chosen = jnp.where(first_wins, rewards[:, 0], rewards[:, 1])",
    "chosen = jnp.where(first_wins, rewards[:, 0], rewards[:, 2])",
    _CLAMPED,
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "dpo_terms",
    "rejected = jnp.where(first_wins, rewards[:, 1], rewards[:, 0])",
    "rejected = jnp.where(first_wins, rewards[:, 2], rewards[:, 0])",
    _CLAMPED,
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "DPOObjective.__call__",
    'first_wins = batch["label"] > 0.5',
    'first_wins = batch["label"] >= 0.5',
    "a labelled pair's label is 0 or 1 (a tie has label_weight 0, and every term is weighted)",
  ),
  Equivalent(
    "jaxlab/objectives/dpo.py",
    "DPOObjective.__call__",
    'weight = batch["label_weight"].astype(jnp.float32)',
    'weight = batch["label_weight"].astype(None)',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "gae",
    "mask = mask.astype(jnp.float32)",
    "mask = mask.astype(None)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "gae",
    "zeros = jnp.zeros((batch,), jnp.float32)",
    "zeros = jnp.zeros((batch,), None)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "gae",
    "zeros = jnp.zeros((batch,), jnp.float32)",
    "zeros = jnp.zeros((batch,), )",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "last_positions",
    "length = mask.shape[-1]",
    "length = mask.shape[+1]",
    _LAST_AXIS,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "last_positions",
    "last = length - 1 - jnp.argmax(mask[:, ::-1] != 0, axis=-1)",
    "last = length - 1 - jnp.argmax(mask[:, ::-1] != 0, axis=+1)",
    _LAST_AXIS,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "last_positions",
    "any_masked = jnp.any(mask != 0, axis=-1)",
    "any_masked = jnp.any(mask != 0, axis=+1)",
    _LAST_AXIS,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "last_positions",
    "return jax.nn.one_hot(last, length, dtype=jnp.float32) * any_masked[:, None]",
    "return jax.nn.one_hot(last, length, dtype=None) * any_masked[:, None]",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "last_positions",
    "return jax.nn.one_hot(last, length, dtype=jnp.float32) * any_masked[:, None]",
    "return jax.nn.one_hot(last, length, ) * any_masked[:, None]",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "token_rewards",
    "mask = mask.astype(jnp.float32)",
    "mask = mask.astype(None)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "token_rewards",
    "final = jnp.clip(scores.astype(jnp.float32), -reward_clip, reward_clip)",
    "final = jnp.clip(scores.astype(None), -reward_clip, reward_clip)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "experience",
    'mask = rows["response_mask"].astype(jnp.float32)',
    'mask = rows["response_mask"].astype(None)',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "experience",
    '{"params": params["critic"]}, rows["inputs"], rows["segment_ids"], rows["positions"]',
    '{"params": params["critic"]}, rows["inputs"], rows["segment_ids"], None',
    _ROPE_ONLY,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "experience",
    '{"params": params["critic"]}, rows["inputs"], rows["segment_ids"], rows["positions"]\n)',
    '{"params": params["critic"]}, rows["inputs"], rows["segment_ids"], )',
    _ROPE_ONLY,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "ppo_token_terms",
    '"clip_fraction": (jnp.abs(ratio - 1.0) > eps).astype(jnp.float32),',
    '"clip_fraction": (jnp.abs(ratio - 1.0) > eps).astype(None),',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "ppo_token_terms",
    '"clip_fraction": (jnp.abs(ratio - 1.0) > eps).astype(jnp.float32),',
    '"clip_fraction": (jnp.abs(ratio - 1.0) >= eps).astype(jnp.float32),',
    (
      "only the clip_fraction metric reads it, and it differs only where |ratio - 1| equals "
      "clip_eps exactly in float32"
    ),
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "PPOObjective.__call__",
    'mask = batch["response_mask"].astype(jnp.float32)',
    'mask = batch["response_mask"].astype(None)',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "PPOObjective.__call__",
    '{"params": params["critic"]}, batch["inputs"], batch["segment_ids"], batch["positions"]',
    '{"params": params["critic"]}, batch["inputs"], batch["segment_ids"], None',
    _ROPE_ONLY,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "PPOObjective.__call__",
    '{"params": params["critic"]}, batch["inputs"], batch["segment_ids"], batch["positions"]\n)',
    '{"params": params["critic"]}, batch["inputs"], batch["segment_ids"], )',
    _ROPE_ONLY,
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "actor_critic_init",
    "tokens = jnp.zeros((1, seq_len), jnp.int32)",
    "tokens = jnp.zeros((2, seq_len), jnp.int32)",
    "the initial parameters do not depend on the batch size of the example input",
  ),
  Equivalent(
    "jaxlab/objectives/ppo.py",
    "explained_variance",
    'return float("nan")',
    'return float("NAN")',
    "float() parses nan case-insensitively",
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    'positions = batch["judge_positions"].reshape(-1, shape[-1])',
    "positions = None",
    _JUDGE_ROPE,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    'hidden, head = model.apply({"params": params}, *rows, positions, return_hidden=True)',
    'hidden, head = model.apply({"params": params}, *rows, None, return_hidden=True)',
    _JUDGE_ROPE,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    'hidden, head = model.apply({"params": params}, *rows, positions, return_hidden=True)',
    'hidden, head = model.apply({"params": params}, *rows, return_hidden=True)',
    _JUDGE_ROPE,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    "last = hidden[:, -1].astype(jnp.float32)",
    "last = hidden[:, -1].astype(None)",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    "logits = last @ head[:, jnp.asarray(verdict_ids)].astype(jnp.float32)  # [2B, 2]",
    "logits = last @ head[:, jnp.asarray(verdict_ids)].astype(None)  # [2B, 2]",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    "first_verdict = jax.nn.softmax(logits, axis=-1)[:, 0].reshape(-1, 2)",
    "first_verdict = jax.nn.softmax(logits, )[:, 0].reshape(-1, 2)",
    "jax.nn.softmax normalizes over axis -1 by default",
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    "first_verdict = jax.nn.softmax(logits, axis=-1)[:, 0].reshape(-1, 2)",
    "first_verdict = jax.nn.softmax(logits, axis=+1)[:, 0].reshape(-1, 2)",
    "on the [2B, 2] verdict logits, axis +1 is axis -1",
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "judge_probability",
    "return 0.5 * (first_verdict[:, 0] + (1.0 - first_verdict[:, 1]))",
    "return 0.5 * (first_verdict[:, 0] + (1.0 - first_verdict[:, 2]))",
    _CLAMPED,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "reward_predictions",
    "p_implicit=jax.nn.sigmoid(label_rewards[:, 0] - label_rewards[:, 1]),",
    "p_implicit=jax.nn.sigmoid(label_rewards[:, 0] - label_rewards[:, 2]),",
    _CLAMPED,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "SCIRObjective.__call__",
    'weight = batch["pair_weight"].astype(jnp.float32)',
    'weight = batch["pair_weight"].astype(None)',
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "SCIRObjective.__call__",
    _SELECTED,
    "selected = agreed_selection(pred.p_implicit, pred.p_judge, s.tau).astype(None) * weight",
    _DEFAULT_FLOAT,
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "SCIRObjective.__call__",
    "first_wins = jax.lax.stop_gradient(pred.p_judge) > 0.5",
    "first_wins = jax.lax.stop_gradient(pred.p_judge) >= 0.5",
    (
      "at P_G = 0.5 exactly no winner is agreed on, so the pair is not selected and its DPO "
      "term is multiplied by 0"
    ),
  ),
  Equivalent(
    "jaxlab/objectives/scir.py",
    "SCIRObjective.__call__",
    "agree = agreed_selection(pred.p_implicit, pred.p_judge, 0.0).astype(jnp.float32)",
    "agree = agreed_selection(pred.p_implicit, pred.p_judge, 0.0).astype(None)",
    _DEFAULT_FLOAT,
  ),
)
