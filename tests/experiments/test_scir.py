"""The SCIR study end to end: every round's files, resuming inside a round, real use from an LM
run and a prompt file, one-line config errors, and the 7B step's ahead-of-time compile."""

from __future__ import annotations

import json
import os

import jax
import pytest

from jaxlab.config import ConfigError, load_config
from jaxlab.data.letter_task import LetterTask
from jaxlab.experiments import lm_pretrain, scir
from jaxlab.train.metrics import json_safe
from tests.train.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smoke_config(**overrides):
  config = load_config(f"{REPO}/configs/scir_tiny.py:smoke")
  for key, value in overrides.items():
    section, _, field = key.rpartition(".")
    (config[section] if section else config)[field] = value
  return config


def same_tables(a, b):
  """Tables equal as written to results.json (NaN for a model no round started from)."""
  return json.dumps(json_safe(a), sort_keys=True) == json.dumps(json_safe(b), sort_keys=True)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("scir") / "run")
  scir.validate(smoke_config())
  summary = scir.run(smoke_config(), workdir)
  return workdir, summary


def test_every_round_writes_its_data_and_the_study_its_report(uninterrupted):
  workdir, summary = uninterrupted
  config = smoke_config()
  iterations = config.rounds.iterations
  task = LetterTask(config.task.alphabet, config.task.length)
  truths = []
  for method in config.methods:
    assert len(summary["table"][method]) == iterations + 1  # M_0 .. M_T
    for t in range(iterations):
      round_dir = os.path.join(workdir, "seed_0", method, f"iter_{t}")
      prompts = _read_jsonl(os.path.join(round_dir, "prompts.jsonl"))
      samples = _read_jsonl(os.path.join(round_dir, "samples.jsonl"))
      pairs = _read_jsonl(os.path.join(round_dir, "pairs.jsonl"))
      assert len(prompts) == len(samples) == config.task.train_prompts
      assert all(len(s["responses"]) == config.rounds.samples_per_prompt for s in samples)
      for prompt, sample in zip(prompts, samples):
        assert sample["prompt"] == prompt["prompt"] and prompt["prompt"] in task.PROMPTS
        assert sample["scores"] == [task.score(prompt["prompt"], x) for x in sample["responses"]]
      for pair in pairs:
        sample = samples[pair["prompt_index"]]
        texts = sample["responses"]
        assert texts[pair["first"]] != texts[pair["second"]]
        assert 0 < pair["p_implicit"] < 1 and 0 < pair["p_judge"] < 1
        # +1 when the first response holds more of the asked letters, -1 when fewer.
        first = task.score(sample["prompt"], texts[pair["first"]])
        second = task.score(sample["prompt"], texts[pair["second"]])
        assert pair["truth"] == (first > second) - (first < second)
        assert pair["agree"] == ((pair["p_implicit"] - 0.5) * (pair["p_judge"] - 0.5) > 0)
      truths.extend(pair["truth"] for pair in pairs)
      done = json.loads(open(os.path.join(round_dir, "eval.json")).read())
      assert set(done["model"]) >= {"score", "win_rate", "agreement", "irm_accuracy"}
  # Some pairs had a known better response (most smoke samples are malformed, so most are ties).
  assert any(truths), truths
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  assert set(results["results"]) == set(config.methods)
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| scir | M1 |" in report and "| gold_dpo | M0 |" in report
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 10_000


def test_scir_round_zero_uses_the_same_samples_as_gold_dpo(uninterrupted):
  """Every method's first round starts from the same model and random numbers: same pairs."""
  workdir, _ = uninterrupted
  rounds = [os.path.join(workdir, "seed_0", m, "iter_0", "pairs.jsonl") for m in scir.METHODS]
  assert _read_jsonl(rounds[0]) == _read_jsonl(rounds[1]) == _read_jsonl(rounds[2])


def test_a_study_stopped_inside_a_round_resumes_there(uninterrupted, tmp_path, monkeypatch):
  """A stop after a round's pairs are written but before it trains: the resumed study reuses
  those pairs and ends exactly where the uninterrupted one did."""
  reference_dir, reference = uninterrupted
  workdir = str(tmp_path / "run")
  train = scir.Context.train
  calls = []

  def stop_at_the_fourth_stage(self, *args, **kwargs):
    calls.append(args[0])
    if len(calls) == 4:  # base, start, scir round 0, then scir round 1
      raise scir.Preempted()
    return train(self, *args, **kwargs)

  monkeypatch.setattr(scir.Context, "train", stop_at_the_fourth_stage)
  assert scir.run(smoke_config(), workdir) == {"preempted": True}
  round_dir = os.path.join(workdir, "seed_0", "scir", "iter_1")
  pairs_before = open(os.path.join(round_dir, "pairs.jsonl")).read()
  assert not os.path.exists(os.path.join(round_dir, "eval.json"))
  monkeypatch.setattr(scir.Context, "train", train)
  resumed = scir.run(smoke_config(), workdir)
  assert open(os.path.join(round_dir, "pairs.jsonl")).read() == pairs_before
  assert same_tables(resumed["table"], reference["table"])


def test_a_finished_study_is_not_trained_again(uninterrupted, monkeypatch):
  workdir, reference = uninterrupted
  monkeypatch.setattr(
    scir.Trainer, "compile", lambda self: pytest.fail("a finished stage was compiled again")
  )
  assert same_tables(scir.run(smoke_config(), workdir)["table"], reference["table"])


def test_real_use_from_an_lm_run_and_a_prompt_file(tmp_path):
  devices = jax.devices()[:1]
  lm_dir = str(tmp_path / "lm")
  lm_pretrain.run(tiny_config(steps=2), lm_dir, devices)
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"prompt": f"question {i}:"}) + "\n" for i in range(8)))
  template = tmp_path / "judge.txt"
  template.write_text("Which is better for {prompt} 1) {response_a} 2) {response_b}? Answer:\n")
  config = smoke_config(**{"task.kind": "prompts_file", "task.prompts_file": str(prompts)})
  config.methods = ("scir", "self_rewarding")
  config.start.update(run=lm_dir, label_reference_run=lm_dir)
  config.judge.update(template_file=str(template), verdicts=("1", "2"))
  config.rounds.update(iterations=1, max_new_tokens=6, seq_len=32, judge_len=64)
  scir.validate(config)
  workdir = str(tmp_path / "scir")
  summary = scir.run(config, workdir)
  assert set(summary["table"]) == {"scir", "self_rewarding"}
  pairs = _read_jsonl(os.path.join(workdir, "seed_0", "scir", "iter_0", "pairs.jsonl"))
  assert pairs and all("truth" not in p for p in pairs)  # no ground truth in real use
  assert not os.path.exists(os.path.join(workdir, "report.md"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"methods": ("scir", "ppo")}, "methods must be a non-empty subset of scir, self_rewarding"),
    (
      {"scir.irm_reference": "start"},
      "scir.irm_reference must be one of previous, iteration_start",
    ),
    ({"scir.tau": 0.5}, "scir.tau must be in [0, 0.5), got 0.5"),
    ({"judge.template": "{prompt} {response_a}"}, "must contain {response_b} exactly once"),
    ({"judge.verdicts": ("yes", "no")}, "judge verdict 'yes' encodes to 3 tokens"),
    ({"rounds.samples_per_prompt": 1}, "rounds.samples_per_prompt must be at least 2"),
    ({"task.kind": "prompts_file"}, "gold_dpo needs true labels"),
    ({"judge.template_file": "/nonexistent/judge.txt"}, "judge.template_file: No such file"),
  ],
)
def test_bad_configs_are_one_line(overrides, message):
  with pytest.raises(ConfigError) as e:
    scir.validate(smoke_config(**overrides))
  assert message in str(e.value) and "\n" not in str(e.value)


def test_the_scir_step_compiles_ahead_of_time(tmp_path):
  """The 7B config's dry-run path (policy, its reference and the label reference compiled
  abstractly, FSDP over the devices) on a narrow, shallow model and the 8 local devices; the
  full 7B on a v5p-128 slice goes through the same code plus libtpu (README, Results)."""
  config = load_config(f"{REPO}/configs/scir_7b.py")
  config.model.update(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)
  config.rounds.update(batch_size=8, seq_len=64, judge_len=96)
  scir.validate(config, dry_run=True)
  result = scir.dry_run(config, str(tmp_path))
  assert result["num_devices"] == 8 and result["mesh"]["fsdp"] == 8
  assert result["frozen_models"] == 2 and "fits" not in result
  assert result["bytes_per_device"] > 0
  assert json.loads((tmp_path / "dry_run.json").read_text())["params"] == result["params"]


@pytest.mark.parametrize(
  "content, message",
  [
    (b'{"prompt": "a"}\nnot json\n', ":2: invalid JSON: Expecting value"),
    (b"[" * 100_000 + b"\n", ":1: invalid JSON: nested too deeply"),
    (b'{"prompt": "a"}\n\xff\xfe\n', ":2: binary data, not UTF-8 text"),
    (b'{"text": "a"}\n', ':1: expected an object with a string "prompt"'),
    (b"\n\n", ": no prompts"),
  ],
)
def test_a_bad_prompt_file_is_one_line(tmp_path, content, message):
  path = tmp_path / "prompts.jsonl"
  path.write_bytes(content)
  with pytest.raises(ConfigError) as e:
    scir._read_prompts(str(path))
  assert str(e.value).startswith(f"{path}{message}") and "\n" not in str(e.value)
