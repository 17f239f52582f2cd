"""The SMI study's smoke configuration end to end (what CI runs; about 2 minutes on 2 cores)."""

import json
import math
import os
import subprocess
import sys

import pytest

from jaxlab.smi.count import count_triples_naive
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


# Parameters of the smoke sizes by hand (vocab 259, tied embeddings, head dim d / n_heads):
# per layer q, o: d^2 each; k, v: d * n_kv_heads * head_dim each; SwiGLU 3 * d * d_ff; two norms
# of d; plus the embedding 259 * d and the final norm d.
#   xs: d=32, 1 layer:  1024+1024+512+512 + 3*32*86 + 64 = 11,392;   + 8,288 + 32 = 19,712
#   s:  d=48, 1 layer:  2304+2304+1152+1152 + 3*48*128 + 96 = 25,440; + 12,432 + 48 = 37,920
#   m:  d=64, 2 layers: 2 * (4096+4096+2048+2048 + 3*64*172 + 128) = 90,880; + 16,576 + 64
SMOKE_PARAMS = {"xs": 19_712, "s": 37_920, "m": 107_520}


def _jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_study_runs_every_stage(tmp_path):
  workdir = tmp_path / "study"
  result = _launch("--config", "configs/smi_scaling.py:smoke", "--workdir", str(workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert list(summary["sizes"]) == ["xs", "s", "m"]  # in order of size
  assert {size: row["params"] for size, row in summary["sizes"].items()} == SMOKE_PARAMS

  # Counts: the same numbers as the plain `in` reference counter over the generated corpus.
  data = workdir / "data"
  triples = [
    Triple(t["subj"], t["rel"], t["obj"], t["idx"]) for t in _jsonl(data / "triples.jsonl")
  ]
  documents = [row["text"] for row in _jsonl(data / "corpus.jsonl")]
  counts = _jsonl(data / "counts.jsonl")
  assert len(triples) == 48 and len(documents) == 800
  assert counts == count_triples_naive(triples, documents)
  assert min(r["n_both"] for r in counts) >= 1  # every fact is stated at least once

  uniform_loss = math.log(259)
  for size, row in summary["sizes"].items():
    run_dir = workdir / "models" / size
    # The study reports each model's own final losses, and every model learned the corpus.
    run_summary = json.loads((run_dir / "summary.json").read_text())
    assert (row["loss"], row["eval_loss"]) == (run_summary["loss"], run_summary["eval_loss"])
    assert run_summary["step"] == 120
    assert row["eval_loss"] < uniform_loss - 1.5, (size, row)
    # Records: the counts joined on the triple, accuracies over 2 templates x 2 samples.
    records = _jsonl(run_dir / "records.jsonl")
    assert [{k: v for k, v in r.items() if k != "acc"} for r in records] == counts
    assert all(r["acc"] in (0.0, 0.25, 0.5, 0.75, 1.0) for r in records)
    assert row["mean_acc"] == pytest.approx(sum(r["acc"] for r in records) / len(records))
    fit = json.loads((run_dir / "fit.json").read_text())["fit"]
    assert (row["n_triples"], row["n_dropped"]) == (fit["n_triples"], fit["n_dropped"]) == (48, 0)
    assert row["r2"] == {m: fit["methods"][m]["r2"] for m in ("CO-OCCUR", "MI", "SMI")}
  # Bigger models reach a lower held-out loss in the same number of steps (seeded: 3.14, 2.85,
  # 2.04 when written).
  eval_losses = [row["eval_loss"] for row in summary["sizes"].values()]
  assert eval_losses[0] > eval_losses[1] + 0.1 and eval_losses[1] > eval_losses[2] + 0.3

  assert (workdir / "smi_scaling.png").stat().st_size > 10_000
  report = (workdir / "report.md").read_text()
  assert "| size | params |" in report and "| m | 107,520 |" in report
  assert "[smi_scaling] done" in result.stderr


def test_bad_study_config_is_one_line(tmp_path):
  result = _launch(
    "--config",
    "configs/smi_scaling.py:smoke",
    "--workdir",
    str(tmp_path / "x"),
    "--config.fit_variant=v9",
  )
  assert result.returncode == 2
  assert result.stderr.strip() == "error: fit_variant must be latest or v1, got 'v9'"
  assert not (tmp_path / "x").exists()
