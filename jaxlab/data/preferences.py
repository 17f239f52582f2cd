"""Preference pairs as arrays: (prompt, response 1, response 2) -> the `pair_` rows DPO and SCIR
score, and the pair's judge prompts in both presentation orders (`judge_` rows).

Responses are right-padded rows [BOS] prompt response [EOS] whose loss weights mark the response
and its EOS; judge prompts are left-padded so that every row ends at the same position, where the
verdict is read. A pair that does not fit `seq_len` / `judge_len` is left out and counted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from jaxlab.data.tokenizers import Tokenizer

JUDGE_FIELDS = ("{prompt}", "{response_a}", "{response_b}")
_PLACEHOLDER = re.compile("|".join(re.escape(f) for f in JUDGE_FIELDS))


def check_judge_template(template: str) -> None:
  """Raises ValueError (one line) unless the template holds each placeholder exactly once."""
  for field in JUDGE_FIELDS:
    if template.count(field) != 1:
      raise ValueError(
        f"the judge template must contain {field} exactly once (it has {template.count(field)})"
      )


def render_judge_prompt(template: str, prompt: str, response_a: str, response_b: str) -> str:
  """The template with its placeholders filled in one pass, so a placeholder-like string inside
  a prompt or response is left as it is."""
  values = {"{prompt}": prompt, "{response_a}": response_a, "{response_b}": response_b}
  return _PLACEHOLDER.sub(lambda m: values[m.group(0)], template)


def verdict_token_ids(tokenizer: Tokenizer, verdicts: Sequence[str]) -> tuple[int, int]:
  """The token ids of the two verdict strings; each must encode to exactly one token."""
  if len(verdicts) != 2 or verdicts[0] == verdicts[1]:
    raise ValueError(f"judge verdicts must be two different strings, got {list(verdicts)}")
  ids = []
  for verdict in verdicts:
    encoded = tokenizer.encode(verdict)
    if len(encoded) != 1:
      raise ValueError(
        f"judge verdict {verdict!r} encodes to {len(encoded)} tokens; it must be exactly one"
      )
    ids.append(encoded[0])
  return ids[0], ids[1]


@dataclasses.dataclass(frozen=True)
class PairEncoder:
  """Turns (prompt, response 1, response 2) into the arrays of one pair."""

  tokenizer: Tokenizer
  seq_len: int
  judge_len: int
  judge_template: str

  def response_rows(self, prompt: str, responses: Sequence[str]) -> dict[str, np.ndarray] | None:
    """[len(responses), seq_len] LM rows scoring each response after `prompt`; None if one is too
    long."""
    tok = self.tokenizer
    prompt_ids = [tok.bos_id] + tok.encode(prompt)
    rows = {
      "inputs": np.full((len(responses), self.seq_len), tok.pad_id, np.int32),
      "targets": np.full((len(responses), self.seq_len), tok.pad_id, np.int32),
      "segment_ids": np.zeros((len(responses), self.seq_len), np.int32),
      "positions": np.zeros((len(responses), self.seq_len), np.int32),
      "loss_weights": np.zeros((len(responses), self.seq_len), np.float32),
    }
    for row, response in enumerate(responses):
      ids = prompt_ids + tok.encode(response) + [tok.eos_id]
      n = len(ids) - 1
      if n > self.seq_len:
        return None
      rows["inputs"][row, :n] = ids[:-1]
      rows["targets"][row, :n] = ids[1:]
      rows["segment_ids"][row, :n] = 1
      rows["positions"][row, :n] = np.arange(n)
      rows["loss_weights"][row, len(prompt_ids) - 1 : n] = 1.0
    return rows

  def judge_rows(self, prompt: str, first: str, second: str) -> dict[str, np.ndarray] | None:
    """[2, judge_len] left-padded judge prompts, order (first, second) then (second, first)."""
    tok = self.tokenizer
    rows = {
      "inputs": np.full((2, self.judge_len), tok.pad_id, np.int32),
      "segment_ids": np.zeros((2, self.judge_len), np.int32),
      "positions": np.zeros((2, self.judge_len), np.int32),
    }
    for row, (a, b) in enumerate(((first, second), (second, first))):
      ids = [tok.bos_id] + tok.encode(render_judge_prompt(self.judge_template, prompt, a, b))
      if len(ids) > self.judge_len:
        return None
      rows["inputs"][row, -len(ids) :] = ids
      rows["segment_ids"][row, -len(ids) :] = 1
      rows["positions"][row, -len(ids) :] = np.arange(len(ids))
    return rows

  def _empty(self) -> dict[str, np.ndarray]:
    """Zero pairs, with every array's trailing shape and dtype."""
    rows = self.response_rows("", ["", ""])
    judge = self.judge_rows("", "", "")
    out = {f"pair_{k}": v[None, :0].reshape(0, *v.shape) for k, v in rows.items()}
    out.update({f"judge_{k}": v[None, :0].reshape(0, *v.shape) for k, v in judge.items()})
    out["pair_weight"] = np.ones(0, np.float32)
    return out

  def encode(
    self, pairs: Sequence[tuple[str, str, str]]
  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Arrays of the pairs that fit ([N, 2, ...] pair and judge rows, `pair_weight` 1) and the
    indices (into `pairs`) of those pairs."""
    out: dict[str, list[np.ndarray]] = {}
    kept = []
    for index, (prompt, first, second) in enumerate(pairs):
      responses = self.response_rows(prompt, (first, second))
      judge = self.judge_rows(prompt, first, second)
      if responses is None or judge is None:
        continue
      kept.append(index)
      for key, value in responses.items():
        out.setdefault("pair_" + key, []).append(value)
      for key, value in judge.items():
        out.setdefault("judge_" + key, []).append(value)
    if not pairs:
      return self._empty(), np.zeros(0, np.int64)
    if not kept:
      raise ValueError(
        f"none of {len(pairs)} pairs fits seq_len={self.seq_len} / judge_len={self.judge_len}"
      )
    arrays = {key: np.stack(values) for key, values in out.items()}
    arrays["pair_weight"] = np.ones(len(kept), np.float32)
    return arrays, np.asarray(kept)
