"""The data side of one self-rewarding round: sample responses with the current model, form
pairs from them, and turn a judge's pairwise verdicts into best-vs-worst pairs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxlab.data.tokenizers import Tokenizer
from jaxlab.models.transformer import TransformerConfig
from jaxlab.sampling import generate_text


def sample_responses(
  params: Any,
  cfg: TransformerConfig,
  tokenizer: Tokenizer,
  prompts: Sequence[str],
  samples_per_prompt: int,
  rng: jax.Array,
  *,
  batch_size: int,
  max_new_tokens: int,
  temperature: float,
  top_p: float,
) -> list[list[str]]:
  """`samples_per_prompt` responses to every prompt from the shared jitted sampler, drawn in
  fixed-size batches (the last one padded by repetition) so one compiled shape serves all."""
  flat = [p for p in prompts for _ in range(samples_per_prompt)]
  texts: list[str] = []
  for index, start in enumerate(range(0, len(flat), batch_size)):
    chunk = flat[start : start + batch_size]
    padded = chunk + [chunk[0]] * (batch_size - len(chunk))
    out = generate_text(
      params,
      cfg,
      tokenizer,
      padded,
      jax.random.fold_in(rng, index),
      max_new_tokens=max_new_tokens,
      temperature=temperature,
      top_p=top_p,
    )
    texts += out[: len(chunk)]
  return [texts[i : i + samples_per_prompt] for i in range(0, len(texts), samples_per_prompt)]


def candidate_pairs(
  responses: Sequence[Sequence[str]], pairs_per_prompt: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
  """(prompt index, i, j) for up to `pairs_per_prompt` pairs of different responses per prompt,
  drawn without replacement from all such pairs."""
  pairs = []
  for prompt_index, texts in enumerate(responses):
    distinct = [
      (i, j) for i, j in itertools.combinations(range(len(texts)), 2) if texts[i] != texts[j]
    ]
    chosen = rng.permutation(len(distinct))[:pairs_per_prompt]
    pairs += [(prompt_index, *distinct[k]) for k in sorted(chosen)]
  return pairs


def best_vs_worst(
  pairs: Sequence[tuple[int, int, int]], p_first_better: np.ndarray, num_prompts: int
) -> list[tuple[int, int, int]]:
  """Self-Rewarding's pairs: per prompt, the response with the highest mean judged win
  probability against the others (as first) and the one with the lowest (as second), from the
  judge's verdicts on `pairs`; prompts whose best and worst coincide give no pair."""
  wins: list[dict[int, list[float]]] = [{} for _ in range(num_prompts)]
  for (prompt, i, j), p in zip(pairs, p_first_better):
    wins[prompt].setdefault(i, []).append(float(p))
    wins[prompt].setdefault(j, []).append(1.0 - float(p))
  out = []
  for prompt, scores in enumerate(wins):
    if len(scores) < 2:
      continue
    means = {i: float(np.mean(v)) for i, v in scores.items()}
    best, worst = max(means, key=means.get), min(means, key=means.get)
    if means[best] > means[worst]:
      out.append((prompt, best, worst))
  return out
