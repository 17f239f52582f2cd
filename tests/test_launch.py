import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
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
      "error: data.train_files: glob '/nonexistent/*.jsonl' matches no files",
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
  assert report["bytes_per_device"] > 0
  # 6 N + 6 L H d_head T = 6 * 395_648 + 6 * 2 * 4 * 32 * 128 (tests/train/test_flops.py)
  assert report["flops_per_token"] == 2_570_496
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


def _readme_dry_run_table():
  """{config: (params, global batch, FLOPs/token, bytes per chip)} from README's dry-run table."""
  with open(os.path.join(REPO, "README.md")) as f:
    rows = [line.split("|")[1:-1] for line in f if line.startswith("| smi_")]
  return {
    cells[0].strip(): (
      int(cells[1].replace(",", "")),
      int(cells[2]),
      float(cells[3]),
      float(cells[4].split()[0]) * 1e9,
    )
    for cells in rows
  }


@pytest.mark.parametrize("name", ["smi_1p6b", "smi_7b", "smi_13b"])
def test_readme_dry_run_table_params_batch_and_flops(name):
  """The README's parameter counts (exact), global batches and FLOPs per token (3 digits) are what
  the configs give: parameters counted from the abstract model, FLOPs by the module's formula."""
  from jaxlab.config import load_config
  from jaxlab.experiments.lm_pretrain import lm_init_variables
  from jaxlab.models.transformer import Transformer, TransformerConfig, count_params
  from jaxlab.train.flops import train_flops_per_token

  config = load_config(f"{REPO}/configs/{name}.py")
  cfg = TransformerConfig.from_config(config.model)
  shapes = jax.eval_shape(lm_init_variables(Transformer(cfg), 8), jax.random.PRNGKey(0))
  params, batch, flops, _ = _readme_dry_run_table()[name]
  assert count_params(shapes["params"]) == params
  assert config.train.global_batch == batch
  assert float(f"{train_flops_per_token(cfg, config.train.seq_len):.2e}") == flops


@pytest.mark.needs_libtpu
@pytest.mark.parametrize(
  "name",
  [
    pytest.param("smi_1p6b", marks=pytest.mark.slow),
    "smi_7b",
    pytest.param("smi_13b", marks=pytest.mark.slow),
  ],
)
def test_smi_config_compiles_for_v5p_128_as_the_readme_says(tmp_path, name):
  """Ahead-of-time compile of the train step for a v5p-128 slice through libtpu (~3 min each on
  2 cores; 1.6B and 13B are in `make test-slow`): the README table's row, bytes per chip to 0.05
  GB."""
  workdir = tmp_path / "run"
  result = _launch(
    "--config",
    f"configs/{name}.py",
    "--workdir",
    str(workdir),
    "--dry_run",
    "--config.topology=v5p-128",
    timeout=1200,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / "dry_run.json").read_text())
  assert report["num_devices"] == 64 and report["mesh"]["fsdp"] == 64
  params, _, flops, bytes_per_chip = _readme_dry_run_table()[name]
  assert report["params"] == params and float(f"{report['flops_per_token']:.2e}") == flops
  assert 0 < report["bytes_per_device"] <= report["hbm_per_device"] and report["fits"]
  assert abs(report["bytes_per_device"] - bytes_per_chip) <= 0.05e9


@pytest.mark.parametrize(
  "overrides,message",
  [
    (["--config.train.global_batch=0"], "error: train.global_batch must be at least 1, got 0"),
    (["--config.train.steps=-5"], "error: train.steps must be at least 1, got -5"),
    (["--config.optimizer.lr=-1"], "error: optimizer.lr must be positive, got -1.0"),
    (["--config.train.log_every=0"], "error: train.log_every must be at least 1, got 0"),
    (["--config.checkpoint.every=0"], "error: checkpoint.every must be at least 1, got 0"),
    (["--config.train.microbatches=0"], "error: train.microbatches must be at least 1, got 0"),
  ],
)
def test_runtime_only_bad_values_are_one_line_errors(tmp_path, overrides, message):
  workdir = tmp_path / "run"
  result = _launch("--config", "configs/smi_tiny.py", "--workdir", str(workdir), *overrides)
  assert (result.returncode, result.stderr.strip()) == (2, message)
  assert not workdir.exists()


def test_a_workdir_that_cannot_hold_a_run(tmp_path):
  afile = tmp_path / "a_file"
  afile.write_text("keep me")
  result = _launch("--config", "configs/smi_tiny.py", "--workdir", str(afile))
  assert (result.returncode, result.stderr.strip()) == (
    2,
    f"error: --workdir {afile} is a file, not a directory",
  )
  assert afile.read_text() == "keep me"
  result = _launch("--config", "configs/smi_tiny.py", "--workdir", "/proc/jaxlab_run")
  assert result.returncode == 2 and result.stderr.startswith("error: --workdir /proc/jaxlab_run:")
  assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
  "source,message",
  [
    ("def get_config(:\n", "syntax error"),
    ("import no_such_module_xyz\n", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("def get_config():\n  return 1 / 0\n", "get_config failed: ZeroDivisionError"),
  ],
)
def test_a_broken_config_file_is_one_line(tmp_path, source, message):
  path = tmp_path / "broken.py"
  path.write_text(source)
  result = _launch("--config", str(path), "--workdir", str(tmp_path / "run"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.startswith(f"error: config file {path}") and message in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "run").exists()


def test_a_config_that_conflicts_with_the_run_in_the_workdir_touches_nothing(tmp_path):
  workdir = tmp_path / "run"
  first = _launch("--config", "configs/smi_tiny.py:steps=2", "--workdir", str(workdir))
  assert first.returncode == 0, first.stderr[-2000:]
  before = {p: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}
  result = _launch(
    "--config",
    "configs/smi_tiny.py:steps=4",
    "--workdir",
    str(workdir),
    "--config.model.d_model=64",
  )
  assert (result.returncode, result.stderr.strip()) == (
    2,
    f"error: {workdir} holds a run with a different model.d_model 128 -> 64; use another --workdir",
  )
  assert {p: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()} == before
  # A finished run run again is reported and left as it is.
  again = _launch("--config", "configs/smi_tiny.py:steps=2", "--workdir", str(workdir))
  assert again.returncode == 0 and "is finished (step 2)" in again.stderr
  assert (workdir / "summary.json").read_bytes() == before[workdir / "summary.json"]


def test_a_diverging_run_stops_with_exit_3_and_writes_no_nan(tmp_path):
  workdir = tmp_path / "run"
  result = _launch(
    "--config",
    "configs/smi_tiny.py:steps=100",
    "--workdir",
    str(workdir),
    "--config.optimizer.lr=1e6",
    "--config.train.log_every=5",
    "--config.checkpoint.every=5",
  )
  assert result.returncode == 3, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: training diverged: ") and "Traceback" not in result.stderr
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert sum(row["nonfinite_steps"] for row in rows) >= 5 and rows[-1]["loss"] == "nan"
  assert not (workdir / "summary.json").exists()
  assert "NaN" not in (workdir / "metrics.jsonl").read_text()
  from jaxlab.config import load_config
  from jaxlab.experiments import lm_pretrain
  from tests.train.helpers import final_state

  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved  # the cadence saved while losses were finite or steps were skipped
  config = load_config(f"{REPO}/configs/smi_tiny.py:steps=100")
  trainer = lm_pretrain.build_trainer(config, str(workdir), with_data=False)
  state = final_state(str(workdir), trainer)
  assert all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("delay_s", [1.0, 3.0, 6.0])
def test_sigterm_during_start_up_exits_0_preempted(tmp_path, delay_s):
  """SIGTERM at some point of start-up (imports, validation, compilation or the first steps)."""
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  process = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "jaxlab.launch",
      "--config",
      "configs/smi_tiny.py:steps=100000",
      "--workdir",
      str(workdir),
    ],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  time.sleep(delay_s)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-2000:]
  assert json.loads(out)["preempted"] is True
  if (workdir / "summary.json").exists():
    assert json.loads((workdir / "summary.json").read_text())["preempted"] is True
  assert not [p for p in workdir.rglob(".*") if p.is_file()]  # no temporary file left behind


@pytest.mark.parametrize(
  "content,overrides,message",
  [
    (b"", [], "no documents (the file is empty or has only blank lines)"),
    (b'{"text": "ok"}\n{"text": \n', [], ":2: malformed JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", [], ":1: binary data, not UTF-8 text"),
    (b'{"body": "no text field"}\n', [], ":1: no string field 'text'"),
    (b'{"text": "ok"}\n', ["--config.data.kind=jsnol"], "unknown data.kind 'jsnol'"),
    (
      b'{"text": "ok"}\n',
      ["--config.data.tokenizer.kind=sentencepiece", "--config.data.tokenizer.path={garbage}"],
      "not a SentencePiece model",
    ),
  ],
)
def test_bad_data_is_one_line_before_anything_is_written(tmp_path, content, overrides, message):
  data, garbage = tmp_path / "data.jsonl", tmp_path / "garbage.model"
  data.write_bytes(content)
  garbage.write_bytes(bytes(range(256)) * 4)
  workdir = tmp_path / "run"
  args = [a.replace("{garbage}", str(garbage)) for a in overrides]
  result = _launch(
    "--config",
    "configs/smi_tiny.py",
    "--workdir",
    str(workdir),
    "--config.data.kind=jsonl",
    f"--config.data.train_files={data}",
    "--config.data.eval_files=" + str(data),
    *args,
  )
  assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
  assert len(result.stderr.strip().splitlines()) == 1 and not workdir.exists()


def test_a_run_in_a_bucket_reads_writes_and_resumes_there(tmp_path, bucket_dir, gcs_environment):
  """Data, config, metrics, TensorBoard, checkpoints and summary on gs:// (a local GCS server,
  tests/gcs_emulator.py): 4 steps, then resumed to 6, log for log equal to a local 6-step run."""
  from jaxlab import fileio
  from tests.data.helpers import corpus

  rows = [{"text": text} for text in corpus(200)]
  fileio.write_jsonl_atomic(f"{bucket_dir}/data/corpus.jsonl", rows)
  fileio.write_jsonl_atomic(str(tmp_path / "corpus.jsonl"), rows)

  def launch(steps, workdir, data):
    return subprocess.run(
      [sys.executable, "-m", "jaxlab.launch", "--config", f"configs/smi_tiny.py:steps={steps}"]
      + ["--workdir", workdir, "--config.data.kind=jsonl", f"--config.data.train_files={data}"]
      + ["--config.train.log_every=2", "--config.train.eval_every=2"]
      + ["--config.checkpoint.every=2", "--config.checkpoint.keep=2"]
      # A learning rate that does not depend on train.steps, so 4 + 2 steps equal 6 steps.
      + ["--config.optimizer.decay=constant", "--config.optimizer.warmup_steps=0"],
      cwd=REPO,
      env=dict(os.environ, **gcs_environment, JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
      timeout=600,
    )

  run = f"{bucket_dir}/run"
  for steps in (4, 6):
    result = launch(steps, run, f"{bucket_dir}/data/*.jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
  local = launch(6, str(tmp_path / "run"), str(tmp_path / "corpus.jsonl"))
  assert local.returncode == 0, local.stderr[-2000:]

  def logged(workdir):
    text = fileio.read_text(f"{workdir}/metrics.jsonl")
    return [
      {k: v for k, v in json.loads(line).items() if k in ("step", "loss", "eval_loss")}
      for line in text.splitlines()
    ]

  assert [row["step"] for row in logged(run)] == [2, 4, 6]
  assert logged(run) == logged(str(tmp_path / "run"))
  assert fileio.read_json(f"{run}/summary.json")["step"] == 6
  assert fileio.read_json(f"{run}/config.json")["data"]["train_files"].startswith("gs://")
  assert sorted(fileio.listdir(f"{run}/checkpoints")) == ["4", "6"]
  assert any(
    name.startswith("events.out.tfevents") for name in fileio.listdir(f"{run}/tensorboard")
  )
