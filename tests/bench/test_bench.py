import json
import os
import subprocess
import sys

from jaxlab.bench.presets import get_preset
from jaxlab.bench.sample import jaxlab_decode_tokens_per_s, prompts
from jaxlab.bench.timing import markdown_table
from jaxlab.bench.train import jaxlab_train_tokens_per_s

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_jaxlab_sides_of_the_benchmarks_measure_throughput():
  preset = get_preset("tiny")
  train = jaxlab_train_tokens_per_s(preset, repeats=1)
  assert train["tokens_per_s"] > 0 and train["tflops_per_device"] > 0
  decode = jaxlab_decode_tokens_per_s(preset, prompts(preset), repeats=1)
  assert decode["tokens_per_s"] > 0


def test_markdown_table():
  table = markdown_table([{"impl": "a", "x": 1.23456}], ["impl", "x"])
  assert table.splitlines() == ["| impl | x |", "|---|---|", "| a | 1.235 |"]


def test_kernels_compile_for_a_tpu_topology_from_this_machine(tmp_path):
  out = tmp_path / "aot.json"
  result = subprocess.run([sys.executable, "-m", "jaxlab.bench", "kernels", "--aot_tpu", "v5e-8",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=""), timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr[-2000:]
  lines = [line for line in result.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
  assert len(lines) == 8 and all(line.startswith("OK") for line in lines)
  assert not json.loads(out.read_text())["failed"]
