"""The Weights & Biases hook (jaxlab/train/wandb_logging.py, its config section in
wandb_config.py), in offline mode: no network.

What W&B logged is read back from the run files it wrote (`run-<id>.wandb`: a 7-byte W&B
header, then LevelDB-log records, each a wandb_internal_pb2.Record), the files `wandb sync`
uploads, so the checks see the values themselves, not just that a directory exists.
"""

import glob
import json
import math
import os
import subprocess
import sys

import jax
import ml_collections
import pytest

from jaxlab.config import ConfigError, add_shared_sections, apply_overrides, load_config
from jaxlab.experiments import lm_pretrain
from jaxlab.train import wandb_config, wandb_logging
from jaxlab.train.metrics import MetricsWriter
from jaxlab.train.wandb_config import MISSING_PACKAGE, WandbSettings
from jaxlab.train.wandb_logging import RUN_ID_FILE
from tests.train.helpers import metric_rows, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
_BLOCK = 32768  # LevelDB log block size
_RECORD_HEADER = 7  # crc32c (4), length (2, little-endian), type (1)


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
  """Offline, quiet W&B writing under tmp_path; its process-wide setup reset around the test."""
  wandb = pytest.importorskip("wandb")
  directory = tmp_path / "wandb_dir"
  directory.mkdir()
  for key, value in dict(
    WANDB_MODE="offline",
    WANDB_DIR=str(directory),
    WANDB_SILENT="true",
    WANDB_CONSOLE="off",
    WANDB_DISABLE_GIT="true",
  ).items():
    monkeypatch.setenv(key, value)
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  wandb.teardown()
  yield directory
  wandb.teardown()


def _records(path):
  """The payloads of a .wandb file's records, in order."""
  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B", path
  pos, pending = 7, b""
  while pos + _RECORD_HEADER <= len(data):
    left = _BLOCK - pos % _BLOCK
    if left < _RECORD_HEADER:  # a block's trailer is zero padding
      pos += left
      continue
    length = int.from_bytes(data[pos + 4 : pos + 6], "little")
    kind = data[pos + 6]
    payload = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
    pos += _RECORD_HEADER + length
    if kind == 1:  # full
      yield payload
    elif kind == 2:  # first
      pending = payload
    elif kind == 3:  # middle
      pending += payload
    elif kind == 4:  # last
      yield pending + payload


def _items(items):
  """{key: value} of history, summary or config items (JSON values: NaN and Infinity too)."""
  out = {}
  for item in items:
    key = item.key or "/".join(item.nested_key)
    assert item.value_json, key
    out[key] = json.loads(item.value_json)
  return out


def offline_runs(directory):
  """The offline runs under `directory`, in the order they started: one dict per run with its
  `id`, `name`, `group`, `tags`, `config`, `history` ({step: row without W&B's own `_` keys}),
  `summary` (the last update of each key) and `exit_code`.

  A finished run's records may still be on their way to its file: wandb's service process
  writes them; teardown waits for it."""
  import wandb
  from wandb.proto import wandb_internal_pb2

  wandb.teardown()
  runs = []
  for path in sorted(glob.glob(os.path.join(directory, "wandb", "offline-run-*", "run-*.wandb"))):
    run = {"history": {}, "summary": {}, "exit_code": None}
    for payload in _records(path):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(payload)
      kind = record.WhichOneof("record_type")
      if kind == "run":
        r = record.run
        run.update(
          id=r.run_id,
          name=r.display_name,
          group=r.run_group,
          tags=list(r.tags),
          config={k: v for k, v in _items(r.config.update).items() if not k.startswith("_")},
        )
      elif kind == "history":
        row = _items(record.history.item)
        run["history"][row["_step"]] = {k: v for k, v in row.items() if not k.startswith("_")}
      elif kind == "summary":
        run["summary"].update(_items(record.summary.update))
      elif kind == "exit":
        run["exit_code"] = record.exit.exit_code
    runs.append(run)
  return runs


def _as_logged(value):
  """A metrics.jsonl value as W&B holds it: non-finite floats are strings in metrics.jsonl."""
  return float(value) if value in ("nan", "inf", "-inf") else value


def _wandb_config(**wandb):
  config = tiny_config(steps=4, eval_every=2)
  add_shared_sections(config)  # what load_config gives every config file
  config.logging.wandb.update(enabled=True, mode="offline", **wandb)
  return config


def test_a_training_run_logs_its_metrics_jsonl_rows_config_and_summary(tmp_path, wandb_dir):
  workdir = str(tmp_path / "run")
  summary = lm_pretrain.run(_wandb_config(tags=("tiny",)), workdir, jax.devices()[:1])
  (run,) = offline_runs(wandb_dir)
  expected = {
    row["step"]: {k: _as_logged(v) for k, v in row.items() if k != "step"}
    for row in metric_rows(workdir)
  }
  assert sorted(expected) == [1, 2, 3, 4] and "eval_loss" in expected[4]
  assert run["history"] == expected
  assert (tmp_path / "run" / RUN_ID_FILE).read_text().strip() == run["id"]
  assert run["name"] == "run" and run["tags"] == ["tiny"] and run["group"] == ""
  assert run["config"]["model.d_model"] == 32 and run["config"]["train.steps"] == 4
  assert run["config"]["logging.wandb.enabled"] is True
  on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
  for key in ("step", "params", "loss", "eval_loss", "device_kind", "flops_per_token"):
    assert run["summary"][key] == on_disk[key] == summary[key], key
  assert run["exit_code"] == 0


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, wandb_dir):
  workdir = str(tmp_path / "run")
  devices = jax.devices()[:1]
  config = _wandb_config()
  config.train.update(steps=2, eval_every=0)
  lm_pretrain.run(config, workdir, devices)  # "preempted" after step 2 (checkpointed at 2)
  config.train.update(steps=4)
  lm_pretrain.run(config, workdir, devices)
  first, resumed = offline_runs(wandb_dir)
  assert first["id"] == resumed["id"] == (tmp_path / "run" / RUN_ID_FILE).read_text().strip()
  assert sorted(first["history"]) == [1, 2] and sorted(resumed["history"]) == [3, 4]
  losses = {row["step"]: row["loss"] for row in metric_rows(workdir)}
  logged = {**first["history"], **resumed["history"]}
  assert {step: row["loss"] for step, row in logged.items()} == losses


def test_non_finite_values_reach_wandb_as_floats(tmp_path, wandb_dir):
  workdir = str(tmp_path / "run")
  writer = MetricsWriter(workdir, wandb=WandbSettings(enabled=True, mode="offline"))
  writer.write(1, {"loss": float("nan"), "grad_norm": float("inf"), "lr": 0.5})
  writer.write(2, {"loss": 1.5, "grad_norm": float("-inf")})
  writer.close({"loss": 1.5, "preempted": False})
  (run,) = offline_runs(wandb_dir)
  assert math.isnan(run["history"][1]["loss"]) and run["history"][1]["grad_norm"] == math.inf
  assert run["history"][1]["lr"] == 0.5
  assert run["history"][2] == {"loss": 1.5, "grad_norm": -math.inf}
  assert run["summary"]["loss"] == 1.5 and run["summary"]["preempted"] is False
  assert [row["loss"] for row in metric_rows(workdir)] == ["nan", 1.5]  # strict JSON there


def test_online_without_a_login_is_a_one_line_config_error(tmp_path, wandb_dir, monkeypatch):
  monkeypatch.delenv("WANDB_MODE")
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
  monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
  monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
  with pytest.raises(ConfigError) as info:
    MetricsWriter(str(tmp_path / "run"), wandb=WandbSettings(enabled=True, mode="online"))
  message = str(info.value)
  assert message.startswith("W&B could not start the run: ") and "\n" not in message
  assert message.endswith("(or set logging.wandb.mode=offline)")


def test_disabled_by_default_a_run_neither_imports_wandb_nor_writes_its_files(
  tmp_path, monkeypatch
):
  monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb would fail the run
  monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
  config = tiny_config(steps=2, eval_every=0)
  add_shared_sections(config)  # a config file's defaults
  lm_pretrain.validate(config)
  workdir = tmp_path / "run"
  assert lm_pretrain.run(config, str(workdir), jax.devices()[:1])["step"] == 2
  assert not any("wandb" in p.name for p in workdir.rglob("*"))
  assert not (tmp_path / "wandb_dir").exists()


def test_jaxlab_and_its_configs_load_without_importing_wandb():
  """In a fresh interpreter: the launcher, every study and every config file's settings."""
  code = (
    "import glob, importlib, sys\n"
    "import jaxlab.launch\n"
    "from jaxlab.config import load_config\n"
    "for path in sorted(glob.glob('configs/*.py')):\n"
    "  config = load_config(path)\n"
    "  importlib.import_module(f'jaxlab.experiments.{config.experiment}')\n"
    "from jaxlab.experiments import lm_pretrain\n"
    "settings = lm_pretrain.LMSettings.from_config(load_config('configs/smi_tiny.py'))\n"
    "assert not settings.trainer_settings().wandb.enabled\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wandb'))\n"
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_has_the_section_and_enabling_without_wandb_is_one_line(
  name, monkeypatch
):
  config = load_config(os.path.join(REPO, "configs", name))
  assert config.logging.to_dict() == wandb_config.logging_defaults().to_dict()
  assert config.logging.wandb.enabled is False
  module = __import__(f"jaxlab.experiments.{config.experiment}", fromlist=["validate"])
  apply_overrides(config, [("logging.wandb.enabled", "True")])
  monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
  with pytest.raises(ConfigError) as info:
    module.validate(config, dry_run=True)
  message = str(info.value)
  assert message.endswith(MISSING_PACKAGE) and "\n" not in message
  assert "pip install 'jaxlab[wandb]'" in message


def test_a_config_file_keeps_its_own_wandb_values(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text(
    "import ml_collections\n"
    "from jaxlab import presets\n"
    "def get_config(arg=None):\n"
    "  config = presets.lm_config()\n"
    "  config.logging = ml_collections.ConfigDict(dict(wandb=dict(project='mine')))\n"
    "  return config\n"
  )
  config = load_config(str(path))
  assert config.logging.wandb.project == "mine" and config.logging.wandb.mode == "online"
  apply_overrides(config, [("logging.wandb.tags", "('a', 'b')"), ("logging.wandb.mode", "offline")])
  settings = wandb_logging.wandb_settings(config)
  assert (settings.project, settings.tags, settings.mode) == ("mine", ("a", "b"), "offline")
  assert settings.run_config["model.d_model"] == config.model.d_model


def test_bad_wandb_settings_are_one_line_config_errors():
  config = ml_collections.ConfigDict(dict(seed=0))
  add_shared_sections(config)
  config.logging.wandb.mode = "sometimes"
  with pytest.raises(ValueError, match=r"^logging.wandb.mode must be online or offline"):
    wandb_logging.wandb_settings(config).validate()
  config.logging.wandb.projet = "x"
  with pytest.raises(ConfigError, match=r"did you mean 'logging.wandb.project'"):
    wandb_logging.wandb_settings(config)
  config = ml_collections.ConfigDict(dict(seed=0))  # a config without the section: defaults
  assert wandb_logging.wandb_settings(config) == WandbSettings()


def test_runs_of_a_study_are_named_by_their_path_and_grouped_by_the_study():
  plain = WandbSettings()
  assert plain.run_name("/runs/smi_tiny/") == "smi_tiny" and plain.group_name() == ""
  study = WandbSettings().in_study("/runs/scir")
  assert study.run_name("/runs/scir/seed_0/dpo/iter_1/train") == "scir/seed_0/dpo/iter_1/train"
  assert study.group_name() == "scir"
  named = WandbSettings(name="ablation", group="g").in_study("gs://bucket/scir")
  assert named.run_name("gs://bucket/scir/seed_1/sft/train") == "ablation/seed_1/sft/train"
  assert named.group_name() == "g"
  section = ml_collections.ConfigDict(dict(name="", group=""))
  wandb_config.name_in_study(section, "/runs/smi", "/runs/smi/models/xs")
  assert section.to_dict() == {"name": "smi/models/xs", "group": "smi"}
