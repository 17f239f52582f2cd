"""python -m jaxlab.generate on an imported checkpoint: token-id and text prompts, greedy output
against a full-forward reference and against transformers' greedy generate, bad input."""

import json
import os

import jax
import numpy as np
import pytest

from jaxlab import generate
from jaxlab.interop import hf
from jaxlab.models.transformer import Transformer
from tests.cli_helpers import run_main
from tests.interop.helpers import FIXTURE, assert_one_line_error, copy_fixture

PROMPTS = [[1, 17, 3, 29, 8], [1, 5, 30, 2, 11, 25, 4, 19, 7, 31, 22]]
NEW_TOKENS = 8
WORDS = ["the", "cat", "sat"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """The committed tiny LLaMA imported (no tokenizer)."""
  workdir = str(tmp_path_factory.mktemp("generate") / "run")
  hf.import_checkpoint(FIXTURE, workdir)
  return workdir


@pytest.fixture(scope="module")
def run_with_tokenizer(tmp_path_factory):
  """The fixture plus a word-level tokenizer.json over its 32 ids, imported."""
  tokenizers = pytest.importorskip("tokenizers", reason="HF tokenizers (the test extra)")
  hf_dir = copy_fixture(str(tmp_path_factory.mktemp("tokenized") / "hf"))
  vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: 3 + i for i, w in enumerate(WORDS)}}
  tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
  tokenizer.save(os.path.join(hf_dir, "tokenizer.json"))
  workdir = os.path.join(os.path.dirname(hf_dir), "run")
  hf.import_checkpoint(hf_dir, workdir)
  return workdir


def write_lines(path, lines):
  path.write_text("".join(line + "\n" for line in lines))
  return str(path)


def generate_rows(workdir, tmp_path, capsys, *flags, prompts=PROMPTS):
  prompt_ids = write_lines(tmp_path / "prompts.jsonl", [json.dumps({"ids": p}) for p in prompts])
  out = tmp_path / "out.jsonl"
  argv = ["--workdir", workdir, "--prompt_ids", prompt_ids, "--out", str(out), *flags]
  code, _, err = run_main(generate.main, ["--max_new_tokens", str(NEW_TOKENS), *argv], capsys)
  assert code == 0, err
  return [json.loads(line) for line in out.read_text().splitlines()]


def reference_greedy(workdir, prompts):
  """Greedy continuations by repeated full forwards (one compiled shape: the sequence sits at
  the start of a fixed buffer, and causal attention ignores what follows it)."""
  settings = generate.read_run_settings(workdir)
  _, params = generate.load_params(workdir, settings)
  forward = jax.jit(Transformer(settings.model).apply)
  results = []
  for prompt in prompts:
    ids, logprobs = list(prompt), []
    for _ in range(NEW_TOKENS):
      buffer = np.zeros((1, 32), np.int32)
      buffer[0, : len(ids)] = ids
      logits = np.asarray(forward({"params": params}, buffer)[0])[0, len(ids) - 1]
      token = int(np.argmax(logits))
      logprobs.append(float(jax.nn.log_softmax(logits)[token]))
      ids.append(token)
    results.append((ids[len(prompt) :], logprobs))
  return results


def test_prompt_ids_greedy_matches_full_forward_decoding(run_dir, tmp_path, capsys):
  rows = generate_rows(run_dir, tmp_path, capsys)
  assert len(rows) == len(PROMPTS)
  for row, (ids, logprobs) in zip(rows, reference_greedy(run_dir, PROMPTS)):
    assert set(row) == {"ids", "logprobs"}  # no tokenizer: no text
    assert row["ids"] == ids
    np.testing.assert_allclose(row["logprobs"], logprobs, atol=1e-4)


def test_greedy_equals_transformers_generate(run_dir, tmp_path, capsys):
  torch = pytest.importorskip("torch", reason="the hf extra (torch, transformers)")
  transformers = pytest.importorskip("transformers", reason="the hf extra (torch, transformers)")
  model = transformers.AutoModelForCausalLM.from_pretrained(FIXTURE, dtype=torch.float32).eval()
  rows = generate_rows(run_dir, tmp_path, capsys, "--eos_id", "2")  # the checkpoint's EOS
  for row, prompt in zip(rows, PROMPTS):
    with torch.no_grad():
      out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=2,
        pad_token_id=0,
      )
    assert row["ids"] == out[0, len(prompt) :].tolist()


def test_text_prompts_are_encoded_with_bos_and_decoded(run_with_tokenizer, tmp_path, capsys):
  prompts = write_lines(tmp_path / "prompts.txt", ["the cat sat", "", "a b c d e f"])
  out = tmp_path / "out.jsonl"
  argv = ["--workdir", run_with_tokenizer, "--prompts", prompts, "--out", str(out)]
  code, _, err = run_main(generate.main, [*argv, "--max_new_tokens", str(NEW_TOKENS)], capsys)
  assert code == 0, err
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(rows) == 2  # the blank line is skipped
  by_ids = generate_rows(
    run_with_tokenizer, tmp_path, capsys, prompts=[[1, 3, 4, 5], [1] + [i + 6 for i in range(6)]]
  )
  vocab = {i: w for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
  for row, same in zip(rows, by_ids):
    assert row["ids"] == same["ids"]  # "the cat sat" is [<s>, 3, 4, 5]
    kept = [vocab[i] for i in row["ids"] if i > 2]
    assert row["text"].split() == kept
    assert len(row["ids"]) <= NEW_TOKENS and (len(row["ids"]) == NEW_TOKENS or row["ids"][-1] == 2)


def test_the_shared_run_loader_reads_an_imported_run(run_with_tokenizer):
  from jaxlab.eval.run_loading import load_run

  run = load_run(run_with_tokenizer)
  assert run.model_cfg.vocab_size == 32 and run.model_cfg.rope_llama3_scaling is not None
  assert (run.tokenizer.bos_id, run.tokenizer.eos_id) == (1, 2)
  assert run.tokenizer.encode("the cat sat") == [3, 4, 5]


def test_sampling_is_reproducible_per_seed(run_dir, tmp_path, capsys):
  flags = ("--temperature", "1.0", "--top_p", "0.9", "--seed", "3")
  first = generate_rows(run_dir, tmp_path, capsys, *flags)
  assert first == generate_rows(run_dir, tmp_path, capsys, *flags)
  for row in first:
    assert len(row["ids"]) == NEW_TOKENS and all(lp <= 0 for lp in row["logprobs"])


@pytest.mark.parametrize(
  "lines, flags, fragment",
  [
    (['{"ids": [1, 2]}', "{oops"], (), "prompts.jsonl:2: not JSON"),
    (['{"ids": []}'], (), "at least one id"),
    (['{"tokens": [1]}'], (), 'expected {"ids"'),
    (['{"ids": [1, 40]}'], (), "token id 40 is outside the model's vocabulary [0, 32)"),
    (['{"ids": [1, true]}'], (), "token id True is not an integer"),
    (["", "  "], (), "holds no prompts"),
    (['{"ids": [1]}'], ("--max_new_tokens", "0"), "--max_new_tokens must be at least 1"),
    (['{"ids": [1]}'], ("--temperature", "-1"), "--temperature must be >= 0"),
    (['{"ids": [1]}'], ("--top_p", "0"), "--top_p must be in (0, 1]"),
    (['{"ids": [1]}'], ("--batch_size", "0"), "--batch_size must be at least 1"),
    (['{"ids": [1]}'], ("--prompts", "x.txt"), "not allowed with argument"),
  ],
)
def test_bad_input_is_one_line_and_writes_nothing(
  run_dir, tmp_path, capsys, lines, flags, fragment
):
  prompt_ids = write_lines(tmp_path / "prompts.jsonl", lines)
  out = tmp_path / "out.jsonl"
  argv = ["--workdir", run_dir, "--prompt_ids", prompt_ids, "--out", str(out)]
  code, _, err = run_main(generate.main, [*argv, "--max_new_tokens", "4", *flags], capsys)
  assert_one_line_error(code, err, fragment)
  assert not out.exists()


def test_bad_runs_and_paths_are_one_line_errors(run_dir, tmp_path, capsys):
  prompts = write_lines(tmp_path / "prompts.txt", ["the cat"])
  out = str(tmp_path / "out.jsonl")
  cases = [
    (["--workdir", run_dir, "--prompts", prompts, "--out", out], "needs the run's tokenizer"),
    (["--workdir", str(tmp_path), "--prompts", prompts, "--out", out], "no config.json"),
    (["--workdir", run_dir, "--prompt_ids", prompts, "--out", prompts], "would overwrite"),
    (["--workdir", run_dir, "--prompt_ids", str(tmp_path / "nope"), "--out", out], "nope"),
    (["--workdir", run_dir, "--out", out], "one of the arguments --prompts --prompt_ids"),
  ]
  for argv, fragment in cases:
    code, _, err = run_main(generate.main, [*argv, "--max_new_tokens", "4"], capsys)
    assert_one_line_error(code, err, fragment)
  assert not os.path.exists(out)
