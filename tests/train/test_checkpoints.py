"""Checkpoint fallback: a corrupt latest checkpoint (truncated array file, garbled data position,
missing state item) makes a restart resume from the previous one, with one warning; the broken
step is moved aside, not deleted. No readable checkpoint at all: one-line CheckpointError."""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from jaxlab.eval.run_loading import load_run
from jaxlab.experiments import lm_pretrain
from jaxlab.train.checkpoints import Checkpointer, CheckpointError
from tests.train.helpers import assert_trees_equal, logged, tiny_config


def config(steps):
  """`tiny_config` with a constant rate after warm-up: the 6- and 9-step runs then share their
  schedule, so a resumed step reproduces the first run's loss exactly."""
  cfg = tiny_config(steps=steps)
  cfg.optimizer.update(decay="constant")
  return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 6-step run with checkpoints at steps 3 and 6, and its logged losses."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  lm_pretrain.run(config(6), workdir, jax.devices()[:1])
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  return workdir, logged(workdir)


def copy_run(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained[0], workdir)
  return workdir


def step_dir(workdir, step):
  return os.path.join(workdir, "checkpoints", str(step))


def corrupt(workdir, step, how):
  """Breaks checkpoint `step` of `workdir` the way a crash or a bad disk would."""
  directory = step_dir(workdir, step)
  if how == "truncated_array":
    # The array chunks (OCDBT data files, or zarr chunk files) live under `d/` directories of
    # the state item; the largest one holds the bulk of the arrays.
    chunks = [
      f for f in glob.glob(os.path.join(directory, "state", "**", "d", "*"), recursive=True)
    ]
    assert chunks, os.listdir(os.path.join(directory, "state"))
    largest = max(chunks, key=os.path.getsize)
    os.truncate(largest, os.path.getsize(largest) // 2)
  elif how == "garbled_data_json":
    data_files = [f for f in glob.glob(os.path.join(directory, "data", "*")) if "commit" not in f]
    assert data_files
    for path in data_files:
      with open(path, "w") as f:
        f.write('{"position": 12, "epo')
  elif how == "missing_state":
    shutil.rmtree(os.path.join(directory, "state"))
  else:
    raise ValueError(how)


def jaxlab_warnings(caplog):
  return [
    r.getMessage()
    for r in caplog.records
    if r.name.startswith("jaxlab") and r.levelno >= logging.WARNING
  ]


@pytest.mark.parametrize("how", ["truncated_array", "garbled_data_json", "missing_state"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path, caplog, how):
  workdir = copy_run(trained, tmp_path)
  corrupt(workdir, 6, how)
  caplog.set_level(logging.WARNING)
  summary = lm_pretrain.run(config(9), workdir, jax.devices()[:1])
  warnings = jaxlab_warnings(caplog)
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f"checkpoint step 6 in {os.path.join(workdir, 'checkpoints')} ")
  assert "is unreadable (" in warnings[0] and warnings[0].endswith("; falling back to step 3")
  assert "\n" not in warnings[0]
  # Resumed from step 3: steps 4-6 were trained again, exactly as the first time.
  original, resumed = trained[1], logged(workdir)
  assert sorted(resumed) == list(range(1, 10))
  assert [resumed[s] for s in range(4, 7)] == [original[s] for s in range(4, 7)]
  assert summary["step"] == 9 and not summary["preempted"]
  # The broken step was moved aside, not deleted; step 6 was saved again beside it.
  listing = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  assert listing == ["3", "6", "9", "unreadable-6"], listing
  checkpointer = Checkpointer(workdir)
  try:
    assert checkpointer.latest_step() == 9
  finally:
    checkpointer.close()


def test_no_readable_checkpoint_is_one_line_checkpoint_error(trained, tmp_path, caplog):
  workdir = copy_run(trained, tmp_path)
  corrupt(workdir, 6, "truncated_array")
  corrupt(workdir, 3, "missing_state")
  caplog.set_level(logging.WARNING)
  with pytest.raises(CheckpointError) as raised:
    lm_pretrain.run(config(9), workdir, jax.devices()[:1])
  message = str(raised.value)
  assert isinstance(raised.value, ValueError)
  assert "\n" not in message
  assert os.path.join(workdir, "checkpoints") in message and "tried steps 6, 3" in message
  assert len(jaxlab_warnings(caplog)) == 1  # 6 -> 3; step 3 failing is the error itself
  # Nothing was moved: every restart reports the same until someone looks.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]


def test_load_run_falls_back_without_moving_anything(trained, tmp_path, caplog):
  workdir = copy_run(trained, tmp_path)
  corrupt(workdir, 6, "missing_state")
  caplog.set_level(logging.WARNING)
  loaded = load_run(workdir, jax.devices()[:1])
  assert len(jaxlab_warnings(caplog)) == 1
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  checkpointer = Checkpointer(workdir)
  try:
    params_3 = checkpointer.restore_params(loaded.params, step=3)
  finally:
    checkpointer.close()
  assert_trees_equal(loaded.params, params_3)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(loaded.params))
