"""Key-token loss weights for tool-call targets (PKT in TL-Training, arXiv 2412.15495).

A wrong tool call is usually decided by a handful of tokens: the first token of the tool name and
the token where the gold name parts from a similarly named tool. Those key tokens get a larger
weight so the weighted mean loss (sum(w * CE) / sum(w), what `jaxlab.objectives.lm` computes)
is not dominated by the many easy tokens of a call:

  K       the first token of the gold name, plus, for every other declared tool whose name shares
          at least its first token with the gold one, the gold token where the two diverge: the
          first position where the target's tokens differ from the same target with the other
          tool's name put in the gold one's place. When the gold name is a prefix of the other,
          that is the token after the name ("(" in `name(...)`).
  para    tokens after the tool name whose decoded text, stripped of whitespace, is non-empty and
          made only of closing characters `"')]},` (`")`, `,`, `"` ...). They end argument values
          and keep weight 1 without counting as non-key. With a byte tokenizer this includes the
          opening quote of a string, which is a lone `"` byte as well.
  non-key the other target tokens, EOS included.

Key tokens weigh min(N_nonkey / N_key, w_max) when N_key < N_nonkey, else 1; all others weigh 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from jaxlab.data.tokenizers import Tokenizer

CLOSING_CHARS = frozenset("\"')]},")
DEFAULT_W_MAX = 9.0


def is_para_text(text: str) -> bool:
  """Whether a token's decoded text closes an argument value (see the module docstring)."""
  stripped = text.strip()
  return bool(stripped) and set(stripped) <= CLOSING_CHARS


def key_weight(num_key: int, num_nonkey: int, w_max: float = DEFAULT_W_MAX) -> float:
  """The weight of every key token: N_nonkey / N_key capped at `w_max`, and 1 unless the key
  tokens are outnumbered."""
  if num_key == 0 or num_key >= num_nonkey:
    return 1.0
  return min(num_nonkey / num_key, w_max)


def target_weights(
  tokenizer: Tokenizer,
  target: str,
  name_span: tuple[int, int] | None,
  tool_names: Iterable[str],
  w_max: float = DEFAULT_W_MAX,
) -> tuple[list[int], np.ndarray]:
  """Token ids of `target` followed by EOS, and their PKT weights (float32).

  `name_span` is the (start, end) character span of the called tool's name in `target`; without
  one every weight is 1. Token positions of characters come from the lengths of decoded prefixes,
  exact for byte-level tokenizers.
  """
  ids = tokenizer.encode(target)
  weights = np.ones(len(ids) + 1, np.float32)
  if name_span is None:
    return [*ids, tokenizer.eos_id], weights
  start, end = name_span
  first = _token_at(tokenizer, ids, start)
  after_name = _token_at(tokenizer, ids, end)  # the token that ends the name, or EOS
  gold = [*ids, tokenizer.eos_id]
  key = {first}
  for name in tool_names:
    if name == target[start:end]:
      continue
    rival = [*tokenizer.encode(target[:start] + name + target[end:]), tokenizer.eos_id]
    diverge = _first_difference(gold, rival)
    if first < diverge <= after_name:
      key.add(diverge)
  para = {
    i
    for i in range(after_name, len(ids))
    if i not in key and is_para_text(tokenizer.decode(ids[i : i + 1]))
  }
  weights[sorted(key)] = key_weight(len(key), len(gold) - len(key) - len(para), w_max)
  return gold, weights


def _token_at(tokenizer: Tokenizer, ids: Sequence[int], char_index: int) -> int:
  """Index of the token holding character `char_index` of the decoded `ids` (len(ids) past the
  end): the largest i whose prefix ids[:i] decodes to at most `char_index` characters."""
  low, high = 0, len(ids)
  while low < high:
    middle = (low + high + 1) // 2
    if len(tokenizer.decode(ids[:middle])) <= char_index:
      low = middle
    else:
      high = middle - 1
  return low


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
  """The first index where `a` and `b` differ (the shorter length if one is a prefix)."""
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return i
  return min(len(a), len(b))
