import json
import os
import subprocess
import sys

from jaxlab.bench import gpu, gpu_sections
from jaxlab.bench.__main__ import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cpu_small_preset_runs_every_section_end_to_end(tmp_path):
  out = tmp_path / "bench"
  result = subprocess.run(
    [sys.executable, "-m", "jaxlab.bench", "gpu", "--preset", "cpu_small", "--no_peer"]
    + ["--out", str(out)],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=""),  # one device, as users run it
    timeout=600,
  )
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  report = json.loads((out / "gpu.json").read_text())
  assert report["complete"] and report["preset"] == "cpu_small"
  assert report["peer"] == "skipped (--no_peer)" and report["peak_flops_per_device"] is None
  assert (
    report["xla_flags"] == gpu.SUITES["cpu_small"].xla_flags
  )  # fast compiles, set by the preset
  sections = report["sections"]
  assert list(sections) == ["train", "attention", "linear_ce", "decode"]
  assert all(s["status"] == "ok" and s["shapes"] and s["goals"] for s in sections.values())

  (train,) = sections["train"]["rows"]
  assert train["tokens_per_s"] > 0 and train["tflops_per_device"] > 0 and train["mfu"] is None
  assert train["remat_policy"] == "dots_no_batch" and 0 < train["loss"] < 10
  assert sections["train"]["shapes"]["dtype"] == "bfloat16"
  assert sections["train"]["goals"] == [{"goal": "MFU >= 50%", "value": None, "met": None}]

  rows = {row["impl"]: row for row in sections["attention"]["rows"]}
  assert rows["jaxlab pallas"]["status"] == rows["cudnn"]["status"] == "unavailable on cpu"
  assert rows["xla"]["status"] == "ok" and rows["xla"]["ms"] > 0 and rows["xla"]["tflops"] > 0
  assert all(goal["met"] is None for goal in sections["attention"]["goals"])

  ce = sections["linear_ce"]["rows"]
  assert [(r["vocab"], r["impl"]) for r in ce] == [
    (v, impl) for v in (2048, 8192) for impl in ("naive", "fused")
  ]
  for naive, fused in zip(ce[::2], ce[1::2]):
    assert 0 < fused["temp_bytes"] < naive["temp_bytes"]  # no [tokens, vocab] logits
    assert fused["loss_rel_diff"] < 1e-2 and fused["ms"] > 0 and naive["ms"] > 0
  assert [g["met"] is not None for g in sections["linear_ce"]["goals"]] == [True, True]

  decode = sections["decode"]["rows"]
  assert [(r["batch"], r["impl"]) for r in decode] == [
    (b, impl) for b in (1, 8) for impl in ("jaxlab", "transformers")
  ]
  assert all(r["tokens_per_s"] > 0 for r in decode if r["impl"] == "jaxlab")
  assert all(r["status"] == "skipped (--no_peer)" for r in decode if r["impl"] == "transformers")

  md = (out / "gpu.md").read_text()
  assert md == result.stdout
  lines = md.splitlines()
  assert lines[0] == "# jaxlab GPU benchmark, preset cpu_small (complete)"
  assert "| section | goal | value | met |" in lines
  assert "| train | MFU >= 50% | n/a | n/a |" in lines
  assert any(line.startswith("| jaxlab pallas | unavailable on cpu |") for line in lines)
  assert any(line.startswith("| 8 | transformers | skipped (--no_peer) |") for line in lines)
  assert sum(line.startswith("## ") for line in lines) == 5  # goals + four sections
  assert "bench gpu: [4/4] decode" in result.stderr and "eta=" in result.stderr


def test_missing_packages_or_gpu_are_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
  out = tmp_path / "bench"
  monkeypatch.setattr(gpu, "_module_available", lambda name: name != "torch")
  assert main(["gpu", "--preset", "cpu_small", "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: missing for the gpu benchmark: torch (pip install torch")
  assert err.count("\n") == 1 and "--no_peer" in err and not out.exists()

  assert main(["gpu", "--no_peer", "--out", str(out)]) == 2  # the gpu preset on a CPU
  err = capsys.readouterr().err
  assert err.startswith("error: missing for the gpu benchmark: a CUDA GPU visible to jax")
  assert err.count("\n") == 1 and "--preset cpu_small" in err and not out.exists()


def test_out_that_is_not_a_directory_is_one_line(tmp_path, capsys):
  path = tmp_path / "file"
  path.write_text("keep")
  for out, message in ((path, f"{path} is a file"), (path / "sub", f"sub: {path} is a file")):
    assert main(["gpu", "--preset", "cpu_small", "--no_peer", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and message in err and err.count("\n") == 1
  assert path.read_text() == "keep"


def test_finished_sections_are_on_disk_before_the_next_and_a_failure_is_recorded(
  tmp_path, monkeypatch, capsys
):
  out = tmp_path / "bench"
  seen = []

  def fake(name):
    def section(suite, *peer):
      if name != "train":  # the previous sections are already in gpu.json
        seen.append(list(json.loads((out / "gpu.json").read_text())["sections"]))
      if name == "decode":
        raise RuntimeError("out of memory\nmore detail")
      return {"shapes": {"n": 1}, "rows": [{"impl": name, "ms": 1.5}], "columns": ["impl", "ms"]}

    return section

  for name in gpu.SECTIONS:
    monkeypatch.setattr(gpu_sections, name, fake(name))
  assert main(["gpu", "--preset", "cpu_small", "--no_peer", "--out", str(out)]) == 1
  assert seen == [["train"], ["train", "attention"], ["train", "attention", "linear_ce"]]
  report = json.loads((out / "gpu.json").read_text())
  assert report["complete"] and report["sections"]["train"]["rows"] == [
    {"impl": "train", "ms": 1.5}
  ]
  decode = report["sections"]["decode"]
  assert decode["status"] == "error" and decode["error"] == "RuntimeError: out of memory"
  assert "Traceback" in decode["traceback"]
  md = (out / "gpu.md").read_text()
  assert md.startswith("# jaxlab GPU benchmark, preset cpu_small (complete, failed: decode)\n")
  assert "| attention | 1.5 |" in md and "error: RuntimeError: out of memory" in md
  assert "decode failed: RuntimeError: out of memory" in capsys.readouterr().err
