"""The SMI study's smoke configuration end to end (what CI runs; about 2 minutes on 2 cores)."""

import json
import math
import os
import subprocess
import sys

import pytest

from jaxlab.config import ConfigError, load_config
from jaxlab.experiments import smi_scaling
from jaxlab.smi.corpus_gen import FACTOR_FIELDS
from jaxlab.smi.count import count_triples_naive
from jaxlab.smi.study_stats import PREDICTORS, size_r2
from jaxlab.smi.triples import Triple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _launch(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run(
    [sys.executable, "-m", "jaxlab.launch", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )


# Parameters of the smoke sizes by hand (tied embeddings, head dim d / n_heads; vocab = 259 bytes
# + 2 pieces per word of words.txt): per layer q, o: d^2 each; k, v: d * n_kv_heads * head_dim
# each; SwiGLU 3 * d * d_ff; two norms of d; plus the embedding vocab * d and the final norm d.
def _params(d, d_ff, vocab):
  head_dim = d // 2
  return 2 * d * d + 2 * d * head_dim + 3 * d * d_ff + 2 * d + vocab * d + d


def _jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_study_runs_every_stage(tmp_path):
  workdir = tmp_path / "study"
  result = _launch("--config", "configs/smi_scaling.py:smoke", "--workdir", str(workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  data = workdir / "data"
  vocab = 259 + 2 * len((data / "words.txt").read_text().split())
  assert list(summary["sizes"]) == ["xs", "s"]  # in order of size
  assert {size: row["params"] for size, row in summary["sizes"].items()} == {
    "xs": _params(16, 48, vocab),
    "s": _params(32, 88, vocab),
  }

  # Counts: the same numbers as the plain `in` reference counter over the generated corpus.
  triples = [
    Triple(t["subj"], t["rel"], t["obj"], t["idx"]) for t in _jsonl(data / "triples.jsonl")
  ]
  documents = [row["text"] for row in _jsonl(data / "corpus.jsonl")]
  counts = _jsonl(data / "counts.jsonl")
  factors = _jsonl(data / "factors.jsonl")
  assert len(triples) == summary["n_facts"] == 240
  assert counts == count_triples_naive(triples, documents)
  assert all(c["n_both"] - f["true_docs"] == f["chance_docs"] for c, f in zip(counts, factors))
  names = list(summary["factor_correlations"])
  assert names == list(FACTOR_FIELDS)
  assert all(
    abs(summary["factor_correlations"][a][b]) < 0.25 for a in names for b in names if a != b
  )

  for size, row in summary["sizes"].items():
    runs = [
      json.loads((workdir / "models" / size / f"seed{s}" / "cbqa.json").read_text()) for s in (0, 1)
    ]
    for seed, run in enumerate(runs):
      # The study reports each model's own final losses; every model learned the corpus's wording.
      run_summary = json.loads(
        (workdir / "models" / size / f"seed{seed}" / "summary.json").read_text()
      )
      assert (run["loss"], run["eval_loss"]) == (run_summary["loss"], run_summary["eval_loss"])
      assert run_summary["step"] == 80 and run_summary["eval_loss"] < math.log(vocab) - 2
      # Accuracies over 2 templates x 10 samples.
      assert all(round(a * 20, 6) == int(round(a * 20)) for a in run["accuracies"])
    assert runs[0]["accuracies"] != runs[1]["accuracies"]  # the seeds are different models
    assert row["mean_acc_per_seed"] == pytest.approx([sum(r["accuracies"]) / 240 for r in runs])
    # Records: counts and factors joined on the fact, accuracy averaged over the seeds.
    records = _jsonl(workdir / "models" / size / "records.jsonl")
    for record, count, factor, a, b in zip(
      records, counts, factors, *(r["accuracies"] for r in runs)
    ):
      assert record == {
        **count,
        **{k: factor[k] for k in FACTOR_FIELDS},
        "acc": pytest.approx((a + b) / 2),
      }
    stated_once = [r["acc"] for r in records if r["true_docs"] == 1]
    assert row["acc_by_true_docs"]["1"] == pytest.approx(sum(stated_once) / len(stated_once))
    assert list(row["acc_by_true_docs"])[:3] == ["1", "2-3", "4-7"]
    expected = size_r2(records, row["params"], "latest", resamples=200, seed=0)
    assert row["n_facts"] + row["n_dropped"] == 240
    for predictor in PREDICTORS:
      interval = row["r2"][predictor]
      assert interval == pytest.approx(expected["r2"][predictor])
      assert 0 <= interval["low"] <= interval["high"] <= 1
  assert set(summary["pooled"]) == set(PREDICTORS)
  assert sum(summary["pooled"][m]["best"] for m in ("CO-OCCUR", "MI", "SMI")) == pytest.approx(1)

  assert (workdir / "smi_scaling.png").stat().st_size > 10_000
  report = (workdir / "report.md").read_text()
  assert (
    "| size | params | seeds |" in report and f"| s | {_params(32, 88, vocab):,} | 2 |" in report
  )
  assert "| pooled (SMI with each size's P) |" in report and "## Factor correlations" in report
  assert "- xs: 1: " in report
  assert "[smi_scaling] 4/4 models done" in result.stderr and "eta" in result.stderr
  assert "[smi_scaling] done" in result.stderr


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.fit_variant=v9", "fit_variant must be latest or v1, got 'v9'"),
    (
      "--config.corpus.objects_per_relation=1",
      "corpus: objects_per_relation must be at least 2 (a competitor needs another)",
    ),
  ],
)
def test_bad_study_config_is_one_line(tmp_path, override, message):
  result = _launch(
    "--config", "configs/smi_scaling.py:smoke", "--workdir", str(tmp_path / "x"), override
  )
  assert result.returncode == 2
  assert result.stderr.strip() == f"error: {message}"
  assert not (tmp_path / "x").exists()


def test_a_rate_for_a_size_the_study_lacks_is_refused():
  config = load_config("configs/smi_scaling.py:smoke")
  config.lr_by_size = {"s": 3e-3, "xxl": 1e-3}
  with pytest.raises(ConfigError, match=r"^lr_by_size: no such size\(s\): xxl$"):
    smi_scaling.validate(config)
  config.lr_by_size = {"s": 3e-3}
  smi_scaling.validate(config)
  sized = smi_scaling.size_config(config, "s", 0, "/data", vocab=279)
  assert (sized.optimizer.lr, sized.model.vocab_size) == (3e-3, 279)
  assert (
    smi_scaling.size_config(config, "xs", 0, "/data", 279).optimizer.lr == config.base.optimizer.lr
  )


def test_the_eta_weighs_runs_by_cost_and_ignores_runs_found_finished(monkeypatch):
  clock = iter([100.0, 100.0, 100.0, 110.0, 150.0])
  monkeypatch.setattr(smi_scaling.time, "perf_counter", lambda: next(clock))
  eta = smi_scaling._Eta([1.0, 1.0, 2.0, 4.0])
  # Found finished (a resumed study): no rate yet, and the clock restarts.
  assert eta.finished_one("a", cached=True).endswith("1/4 models done (a); elapsed 0:00:00, eta ?")
  # 10 s for a run of weight 1 -> 60 s for the 6 units left.
  assert eta.finished_one("b").endswith("2/4 models done (b); elapsed 0:00:10, eta 0:01:00")
  # 50 s for 3 units -> 4 units left take 66.7 s.
  assert eta.finished_one("c").endswith("3/4 models done (c); elapsed 0:00:50, eta 0:01:07")


def test_a_model_stopped_by_a_signal_is_not_asked_and_the_study_stops(tmp_path, monkeypatch):
  config = load_config("configs/smi_scaling.py:smoke")
  calls = []

  def stopped_early(run_config, run_dir):
    calls.append(run_dir)
    return {"step": 30, "total_steps": 80, "preempted": True}

  monkeypatch.setattr(smi_scaling.lm_pretrain, "run", stopped_early)
  assert smi_scaling.run(config, str(tmp_path)) == {"preempted": True}
  assert calls == [str(tmp_path / "models" / "xs" / "seed0")]  # nothing after the stopped model
  assert not list(tmp_path.glob("models/**/cbqa.json")) and not (tmp_path / "summary.json").exists()


def test_a_run_found_finished_after_trained_ones_keeps_the_clock(monkeypatch):
  clock = iter([0.0, 5.0, 20.0])
  monkeypatch.setattr(smi_scaling.time, "perf_counter", lambda: next(clock))
  eta = smi_scaling._Eta([1.0, 1.0, 1.0])
  assert eta.finished_one("a").endswith("elapsed 0:00:05, eta 0:00:10")
  assert eta.finished_one("b", cached=True).endswith("elapsed 0:00:20, eta 0:00:20")
