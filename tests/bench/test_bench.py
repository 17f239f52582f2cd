import json
import os
import subprocess
import sys

import pytest

from jaxlab.bench.presets import get_preset
from jaxlab.bench.sample import jaxlab_decode_runner, prompts
from jaxlab.bench.timing import interleaved_medians, markdown_table
from jaxlab.bench.train import jaxlab_train_runner, random_tokens, train_row

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_jaxlab_sides_of_the_benchmarks_run():
  preset = get_preset("tiny")  # d 256, 4 layers, 4 heads of 64 (2 kv), d_ff 688, vocab 512
  train_step, flops_per_token = jaxlab_train_runner(preset, random_tokens(preset))
  decode = jaxlab_decode_runner(preset, prompts(preset))
  seconds = interleaved_medians({"train": train_step, "decode": decode}, repeats=1, warmup=0)
  assert seconds["train"] > 0 and seconds["decode"] > 0
  matmul_params = 4 * (256 * 64 * (2 * 4 + 2 * 2) + 3 * 256 * 688) + 256 * 512
  assert flops_per_token == 6 * matmul_params + 6 * 4 * 4 * 64 * 256
  row = train_row(preset, 2.0, flops_per_token)  # a 2-second step of 8 x 256 tokens
  assert row["step_s"] == 2.0 and row["tokens_per_s"] == 1024
  assert row["tflops_per_device"] == 1024 * flops_per_token / 1e12


def test_interleaved_medians_alternate_rounds_and_skip_each_rounds_first_call():
  calls = []
  runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
  interleaved_medians(runners, repeats=4, warmup=1, round_size=2)
  assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
  calls.clear()
  interleaved_medians({"a": runners["a"]}, repeats=4, warmup=1, round_size=2)
  assert calls == ["a"] * 5  # one contender: no untimed lead-in per round


def test_markdown_table():
  table = markdown_table([{"impl": "a", "x": 1.23456}], ["impl", "x"])
  assert table.splitlines() == ["| impl | x |", "|---|---|", "| a | 1.235 |"]


@pytest.mark.needs_libtpu
def test_kernels_compile_for_a_tpu_topology_from_this_machine(tmp_path):
  out = tmp_path / "aot.json"
  result = subprocess.run(
    [sys.executable, "-m", "jaxlab.bench", "kernels", "--aot_tpu", "v5e-8", "--out", str(out)],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=""),
    timeout=600,
  )
  assert result.returncode == 0, result.stdout + result.stderr[-2000:]
  lines = [line for line in result.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
  assert len(lines) == 8 and all(line.startswith("OK") for line in lines)
  assert not json.loads(out.read_text())["failed"]
