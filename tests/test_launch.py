import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  return subprocess.run(
    [sys.executable, "-m", "jaxlab.launch", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.parametrize(
  "args,message",
  [
    (["--config.no_such_key=1"], "error: unknown config key 'no_such_key' (did you mean"),
    (
      ["--config.model.d_modle=1"],
      "error: unknown config key 'model.d_modle' (did you mean 'model.d_model'?)",
    ),
    (["--config.model.d_model=abc"], "error: config key 'model.d_model' expects int, got 'abc'"),
    (["--config.experiment=nope"], "error: unknown experiment 'nope'; available: dll, lm_pretrain"),
    (
      ["--config.mesh.data=3", "--config.mesh.fsdp=-1"],
      "error: mesh {'data': 3, 'fsdp': -1, 'tensor': 1} does not divide the 8 available devices",
    ),
    (
      ["--config.mesh.tensor=2"],
      "error: parameter embedding (259, 128): dimension 259 is not divisible",
    ),
    (
      ["--config.data.kind=jsonl", "--config.data.train_files=/nonexistent/*.jsonl"],
      "error: data.train_files: no file matches '/nonexistent/*.jsonl'",
    ),
    (["--bogus_flag"], "error: Unknown command line flag 'bogus_flag'"),
  ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
  workdir = tmp_path / "run"
  result = _launch("--config", "configs/smi_tiny.py", "--workdir", str(workdir), *args)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert result.stderr.startswith(message), result.stderr
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def test_missing_config_file(tmp_path):
  result = _launch("--config", "configs/does_not_exist.py", "--workdir", str(tmp_path / "run"))
  assert (result.returncode, result.stderr.strip()) == (
    2,
    "error: config file not found: configs/does_not_exist.py",
  )
  assert not (tmp_path / "run").exists()


def test_dry_run_compiles_without_training(tmp_path):
  workdir = tmp_path / "run"
  result = _launch(
    "--config",
    "configs/smi_tiny.py",
    "--workdir",
    str(workdir),
    "--dry_run",
    "--config.mesh.data=2",
    "--config.mesh.fsdp=4",
  )
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((workdir / "dry_run.json").read_text())
  assert report["params"] == 396_288 and report["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
  assert report["bytes_per_device"] > 0 and report["flops_per_token"] > 6 * report["params"] * 0.5
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


@pytest.mark.parametrize("name,params", [("smi_1p6b", 1.6e9), ("smi_7b", 7e9), ("smi_13b", 13e9)])
def test_smi_configs_are_named_for_their_size(name, params):
  from jaxlab.config import load_config
  from jaxlab.models.transformer import TransformerConfig
  from jaxlab.train.flops import matmul_params

  cfg = TransformerConfig.from_config(load_config(f"{REPO}/configs/{name}.py").model)
  total = matmul_params(cfg) + cfg.vocab_size * cfg.d_model + (2 * cfg.n_layers + 1) * cfg.d_model
  assert abs(total / params - 1) < 0.03


def test_smi_7b_compiles_for_v5p_128_and_fits(tmp_path):
  """Ahead-of-time compile of the 7B train step for a v5p-128 slice through libtpu (~2-3 min)."""
  workdir = tmp_path / "run"
  result = _launch(
    "--config",
    "configs/smi_7b.py",
    "--workdir",
    str(workdir),
    "--dry_run",
    "--config.topology=v5p-128",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / "dry_run.json").read_text())
  assert report["num_devices"] == 64 and report["mesh"]["fsdp"] == 64
  assert abs(report["params"] / 7e9 - 1) < 0.03
  assert 0 < report["bytes_per_device"] <= report["hbm_per_device"] and report["fits"]
