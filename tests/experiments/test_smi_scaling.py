"""The SMI study's smoke configuration end to end (what CI runs; about 2 minutes on 2 cores)."""

import json
import os
import subprocess
import sys

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


def test_smoke_study_runs_every_stage(tmp_path):
  workdir = tmp_path / "study"
  result = _launch("--config", "configs/smi_scaling.py:smoke", "--workdir", str(workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert set(summary["sizes"]) == {"xs", "s", "m"}
  params = [row["params"] for row in summary["sizes"].values()]
  assert len(set(params)) == 3
  for row in summary["sizes"].values():
    assert set(row["r2"]) == {"CO-OCCUR", "MI", "SMI"}
    assert row["n_triples"] == 48 and 0.0 <= row["mean_acc"] <= 1.0
  for size in ("xs", "s", "m"):
    records = (workdir / "models" / size / "records.jsonl").read_text().splitlines()
    assert len(records) == 48 and "n_both" in json.loads(records[0])
  counts = [
    json.loads(line) for line in (workdir / "data" / "counts.jsonl").read_text().splitlines()
  ]
  assert min(r["n_both"] for r in counts) >= 1
  assert (workdir / "smi_scaling.png").stat().st_size > 10_000
  assert "| size | params |" in (workdir / "report.md").read_text()
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
