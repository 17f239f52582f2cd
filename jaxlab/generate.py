"""Continuations of prompts from a jaxlab LM run, with the shared sampler (jaxlab.sampling).

  python -m jaxlab.generate --workdir RUN (--prompts FILE.txt | --prompt_ids FILE.jsonl)
      --max_new_tokens N [--temperature T] [--top_p P] [--seed S] [--batch_size B] [--eos_id ID]
      --out OUT.jsonl

`--prompts` holds one text prompt per non-blank line (encoded by the run's tokenizer, BOS first);
`--prompt_ids` one `{"ids": [...]}` per non-blank line, used as given, so runs without a tokenizer
(an imported checkpoint without tokenizer.json) and tokenizer-free comparisons work. OUT gets one
JSON object per prompt, in order: the generated `ids` (EOS included when drawn), their `text` when
the run has a tokenizer, and `logprobs`, each token's log-probability under the untempered model.
Temperature 0 is greedy. Generation stops at EOS (the tokenizer's, or `--eos_id`; negative: never)
or after N tokens. Bad input is one line on stderr and exit status 2; OUT is written atomically.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import jaxlab  # noqa: F401  (selects the JAX platform before jax is imported)
from jaxlab import fileio
from jaxlab.cli import OneLineParser, decode_json, exit_cleanly_on_interrupt, fail, first_line
from jaxlab.config import ConfigError
from jaxlab.fileio import write_jsonl_atomic

# Padded prompt lengths are multiples of this, so prompts of varying length share compilations.
PROMPT_LENGTH_MULTIPLE = 32


def read_run_settings(workdir: str):
  """The LM settings of the run in `workdir`; ValueError (one line) if it is not an LM run."""
  import ml_collections

  from jaxlab.experiments.lm_pretrain import LMSettings

  path = os.path.join(workdir, "config.json")
  try:
    with fileio.open_file(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
    return LMSettings.from_config(config)
  except FileNotFoundError:
    raise ValueError(f"{workdir} is not a jaxlab run: no config.json") from None
  except (ValueError, UnicodeDecodeError, RecursionError, KeyError, AttributeError) as e:
    raise ValueError(f"{path}: not a jaxlab LM run config ({first_line(e)})") from None


def run_tokenizer(settings) -> tuple[Any, str]:
  """(the run's tokenizer, "") or (None, why it cannot be built)."""
  from jaxlab.data.tokenizers import build_tokenizer

  try:
    return build_tokenizer(settings.data.tokenizer), ""
  except (ValueError, ImportError, OSError) as e:
    return None, first_line(e)


def read_prompt_ids(path: str, vocab_size: int) -> list[list[int]]:
  """Token-id prompts, one `{"ids": [...]}` per non-blank line, each id in [0, vocab_size)."""
  prompts = []
  for number, line in _lines(path):
    try:
      row = decode_json(line)
    except ValueError as e:
      raise ValueError(f"{path}:{number}: not JSON ({first_line(e)})") from None
    ids = row.get("ids") if isinstance(row, dict) else None
    if not isinstance(ids, list) or not ids:
      raise ValueError(f'{path}:{number}: expected {{"ids": [token ids]}} with at least one id')
    bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, int)), None)
    if bad is not None:
      raise ValueError(f"{path}:{number}: token id {bad!r} is not an integer")
    out_of_range = next((i for i in ids if not 0 <= i < vocab_size), None)
    if out_of_range is not None:
      raise ValueError(
        f"{path}:{number}: token id {out_of_range} is outside the model's vocabulary "
        f"[0, {vocab_size})"
      )
    prompts.append(ids)
  return _nonempty(prompts, path)


def read_text_prompts(path: str, tokenizer) -> list[list[int]]:
  """Text prompts, one per non-blank line, encoded with BOS first."""
  prompts = [[tokenizer.bos_id, *tokenizer.encode(line)] for _, line in _lines(path)]
  return _nonempty(prompts, path)


def _lines(path: str) -> Iterator[tuple[int, str]]:
  try:
    with fileio.open_file(path) as f:
      text = f.read()
  except UnicodeDecodeError:
    raise ValueError(f"{path} is not UTF-8 text") from None
  for number, line in enumerate(text.splitlines(), start=1):
    if line.strip():
      yield number, line


def _nonempty(prompts: list[list[int]], path: str) -> list[list[int]]:
  if not prompts:
    raise ValueError(f"{path} holds no prompts")
  return prompts


def load_params(workdir: str, settings):
  """(mesh, params) of the run's latest checkpoint, sharded as the run's config says."""
  from jaxlab.experiments.lm_pretrain import lm_init_variables
  from jaxlab.models.transformer import Transformer
  from jaxlab.parallel.mesh import build_mesh
  from jaxlab.train.checkpoints import Checkpointer
  from jaxlab.train.state import variable_shardings, with_shardings

  mesh = build_mesh(settings.mesh)
  init = lm_init_variables(Transformer(settings.model), settings.train.seq_len)
  abstract, shardings = variable_shardings(init, mesh, settings.rules)
  checkpointer = Checkpointer(workdir)
  try:
    return mesh, checkpointer.restore_params(
      with_shardings(abstract["params"], shardings["params"])
    )
  finally:
    checkpointer.close()


def generate(
  params: Any,
  cfg,
  prompts: Sequence[Sequence[int]],
  *,
  max_new_tokens: int,
  temperature: float = 0.0,
  top_p: float = 1.0,
  seed: int = 0,
  batch_size: int = 16,
  eos_id: int | None = None,
  pad_id: int = 0,
) -> list[tuple[list[int], list[float]]]:
  """(generated ids, their log-probabilities) per prompt, in order. Prompts are batched by
  length in batches of `batch_size` rows (the last one filled with repeats, so every batch has
  one shape) and left-padded to a multiple of PROMPT_LENGTH_MULTIPLE; batch b draws from
  fold_in(PRNGKey(seed), b)."""
  import jax

  from jaxlab.sampling import left_pad, padded_length, sample

  order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  batch_size = max(1, min(batch_size, len(prompts)))
  results: list[tuple[list[int], list[float]]] = [([], [])] * len(prompts)
  rng = jax.random.PRNGKey(seed)
  for number, start in enumerate(range(0, len(order), batch_size)):
    rows = order[start : start + batch_size]
    batch = [prompts[i] for i in rows] + [prompts[rows[-1]]] * (batch_size - len(rows))
    tokens, mask = left_pad(batch, pad_id, padded_length(batch, PROMPT_LENGTH_MULTIPLE))
    out = sample(
      params,
      cfg,
      tokens,
      mask,
      jax.random.fold_in(rng, number),
      max_new_tokens=max_new_tokens,
      temperature=temperature,
      top_p=top_p,
      eos_id=eos_id,
      pad_id=pad_id,
    )
    tokens, logprobs, lengths = jax.device_get((out.tokens, out.logprobs, out.lengths))
    for i, row, row_logprobs, n in zip(rows, tokens, logprobs, lengths):
      results[i] = (row[:n].tolist(), [float(x) for x in row_logprobs[:n]])
  return results


def _check_args(args) -> None:
  if args.max_new_tokens < 1:
    raise ValueError(f"--max_new_tokens must be at least 1, got {args.max_new_tokens}")
  if not (math.isfinite(args.temperature) and args.temperature >= 0):
    raise ValueError(f"--temperature must be >= 0 (0: greedy), got {args.temperature}")
  if not 0 < args.top_p <= 1:
    raise ValueError(f"--top_p must be in (0, 1], got {args.top_p}")
  if args.batch_size < 1:
    raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
  source = args.prompts or args.prompt_ids
  if fileio.absolute(args.out) == fileio.absolute(source):
    raise ValueError("--out would overwrite the prompts file")
  if fileio.isdir(args.out):
    raise ValueError(f"--out {args.out} is a directory")


@exit_cleanly_on_interrupt()
def main(argv: Sequence[str] | None = None) -> int:
  parser = OneLineParser(prog="python -m jaxlab.generate", description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a jaxlab LM run directory")
  prompts = parser.add_mutually_exclusive_group(required=True)
  prompts.add_argument("--prompts", help="text prompts, one per line")
  prompts.add_argument("--prompt_ids", help='JSONL of {"ids": [token ids]}')
  parser.add_argument("--max_new_tokens", type=int, required=True)
  parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  parser.add_argument("--top_p", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--eos_id", type=int, default=None, help="default: the tokenizer's EOS")
  parser.add_argument("--out", required=True, help="JSONL, one object per prompt")
  args = parser.parse_args(argv)
  try:
    _check_args(args)
    settings = read_run_settings(args.workdir)
    tokenizer, why_none = run_tokenizer(settings)
    if args.prompt_ids:
      prompts = read_prompt_ids(args.prompt_ids, settings.model.vocab_size)
    elif tokenizer is None:
      raise ValueError(f"--prompts needs the run's tokenizer ({why_none}); use --prompt_ids")
    else:
      prompts = read_text_prompts(args.prompts, tokenizer)
    eos_id = tokenizer.eos_id if tokenizer is not None and args.eos_id is None else args.eos_id
    if eos_id is not None and eos_id < 0:
      eos_id = None
    mesh, params = load_params(args.workdir, settings)
    from jaxlab.parallel.mesh import mesh_context

    with mesh_context(mesh, settings.rules):
      results = generate(
        params,
        settings.model,
        prompts,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        eos_id=eos_id,
        pad_id=0 if tokenizer is None else tokenizer.pad_id,
      )
  except (ValueError, ConfigError, OSError) as e:
    fail(str(e))
  rows = []
  for ids, logprobs in results:
    row: dict[str, Any] = {"ids": ids}
    if tokenizer is not None:
      row["text"] = tokenizer.decode(ids)
    row["logprobs"] = logprobs
    rows.append(row)
  write_jsonl_atomic(args.out, rows)
  print(f"generate: {len(rows)} prompts -> {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
