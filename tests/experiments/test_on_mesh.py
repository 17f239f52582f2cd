"""Every study on the mesh: the same losses on one device and data-parallel over eight, and a
run preempted by SIGTERM then resumed ends bitwise where the uninterrupted run ends."""

import os

import jax
import numpy as np
import pytest

from jaxlab.config import apply_overrides, load_config
from jaxlab.experiments import dll, lm_pretrain, spiking
from tests.train.helpers import assert_trees_equal, final_state, logged, sigterm_after, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _from_file(spec, **overrides):
  config = load_config(os.path.join(REPO, spec))
  apply_overrides(config, [(k, str(v)) for k, v in overrides.items()])
  return config


# study -> (experiment module, config factory, the run's headline eval metric)
STUDIES = {
  "lm": (lm_pretrain, lambda: tiny_config(eval_every=3), "eval_loss"),
  "dll": (
    dll,
    lambda: _from_file("configs/dll_mlp.py:dll", **{"train.epochs": 2}),
    "test_accuracy",
  ),
  "spiking": (
    spiking,
    lambda: _from_file(
      "configs/spiking_order.py:pe=gray,epochs=2",
      **{
        "model.d_model": 16,
        "model.n_heads": 2,
        "model.n_layers": 1,
        "model.mlp_ratio": 2,
        "data.length": 16,
        "data.far": 6,
        "data.num_train": 128,
        "data.num_test": 40,
        "train.batch_size": 32,
        "train.eval_batch_size": 40,
      },
    ),
    "test_accuracy",
  ),
}
# float32 sums reassociate across 8 shards; BatchNorm's batch statistics are cross-device means.
RTOL = {"lm": 2e-5, "dll": 2e-5, "spiking": 1e-4}


def _trainer(study, workdir, data_ways):
  module, make_config, _ = STUDIES[study]
  config = make_config()
  config.mesh.update(data=data_ways, fsdp=1, tensor=1)
  return module.build_trainer(config, str(workdir), jax.devices()[:data_ways])


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_one_device_and_data_parallel_give_the_same_losses(study, tmp_path):
  single = _trainer(study, tmp_path / "single", 1).run()
  parallel = _trainer(study, tmp_path / "data8", 8).run()
  assert parallel["num_devices"] == 8 and single["num_devices"] == 1
  single_losses, parallel_losses = logged(tmp_path / "single"), logged(tmp_path / "data8")
  assert sorted(single_losses) == sorted(parallel_losses) and len(single_losses) >= 2
  steps = sorted(single_losses)
  np.testing.assert_allclose(
    [parallel_losses[s] for s in steps], [single_losses[s] for s in steps], rtol=RTOL[study]
  )
  metric = STUDIES[study][2]
  np.testing.assert_allclose(parallel[metric], single[metric], rtol=RTOL[study], atol=1e-6)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_sigterm_then_resume_ends_bitwise_where_the_uninterrupted_run_ends(study, tmp_path):
  whole = _trainer(study, tmp_path / "whole", 8)
  straight = whole.run()
  preempted = sigterm_after(_trainer(study, tmp_path / "split", 8), step=2).run()
  assert preempted["preempted"] and preempted["step"] == 3
  assert sorted(os.listdir(tmp_path / "split" / "checkpoints")) == ["3"]
  resumed = _trainer(study, tmp_path / "split", 8).run()
  assert not resumed["preempted"] and resumed["step"] == straight["step"]
  assert_trees_equal(final_state(tmp_path / "split", whole), final_state(tmp_path / "whole", whole))
  metric = STUDIES[study][2]
  assert resumed[metric] == straight[metric]
