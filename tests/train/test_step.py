import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.data.global_batch import to_global_batch
from jaxlab.experiments.lm_pretrain import build_trainer
from jaxlab.objectives.base import LossOutput
from jaxlab.train.state import TrainState
from jaxlab.train.step import make_train_step
from tests.train.helpers import random_batch, tiny_config


def _unequal_weights(config, seed=0):
  """random_batch with each row's token weights cut to a different length."""
  batch = random_batch(config, seed)
  keep = (
    np.arange(config.train.seq_len)[None, :] < (4 + 3 * np.arange(len(batch["inputs"])))[:, None]
  )
  batch["loss_weights"] = batch["loss_weights"] * keep
  return batch


def _losses(config, devices, steps=3, make_batch=random_batch):
  trainer = build_trainer(config, "", devices, with_data=False)
  state = trainer.create_state()
  step = trainer.compile()
  losses, grad_norms = [], []
  for _ in range(steps):
    state, metrics = step(state, to_global_batch(make_batch(config), trainer.batch_sharding))
    losses.append(float(metrics["loss"]))
    grad_norms.append(float(metrics["grad_norm"]))
  return np.array(losses), np.array(grad_norms), state


def test_meshes_give_the_same_losses():
  """One device, pure data parallel, and data x fsdp x tensor agree to float tolerance."""
  devices = jax.devices()
  assert len(devices) == 8
  results = {}
  for name, mesh, devs in [
    ("single", dict(data=1, fsdp=1, tensor=1), devices[:1]),
    ("data8", dict(data=8, fsdp=1, tensor=1), devices),
    ("2x2x2", dict(data=2, fsdp=2, tensor=2), devices),
  ]:
    config = tiny_config()
    config.mesh.update(mesh)
    results[name] = _losses(config, devs)
  base_losses, base_norms, base_state = results["single"]
  assert base_losses[-1] < base_losses[0]  # it is actually training
  for name in ("data8", "2x2x2"):
    losses, norms, state = results[name]
    np.testing.assert_allclose(losses, base_losses, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(norms, base_norms, rtol=2e-4, err_msg=name)
    # Adam divides by sqrt of tiny second moments, which amplifies float reassociation on a few
    # elements: parameters agree to a fraction of one learning-rate step (lr = 1e-2).
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=5e-4),
      state.params,
      base_state.params,
    )


def test_2x2x2_mesh_really_shards_parameters():
  config = tiny_config()
  config.mesh.update(data=2, fsdp=2, tensor=2)
  trainer = build_trainer(config, "", with_data=False)
  spec = trainer.state_sharding.params["layers"]["mlp"]["w_gate"].spec
  assert tuple(spec) == (None, "fsdp", "tensor")
  mu = trainer.state_sharding.opt_state[1][0].mu["layers"]["mlp"]["w_gate"].spec
  assert tuple(mu) == (None, "fsdp", "tensor")


@pytest.mark.parametrize("microbatches", [2, 4])
@pytest.mark.parametrize("make_batch", [random_batch, _unequal_weights])
def test_gradient_accumulation_matches_the_large_batch(microbatches, make_batch):
  devices = jax.devices()[:2]
  big = tiny_config()
  big.mesh.update(data=2)
  accumulated = tiny_config(microbatches=microbatches)
  accumulated.mesh.update(data=2)
  big_losses, big_norms, big_state = _losses(big, devices, make_batch=make_batch)
  acc_losses, acc_norms, acc_state = _losses(accumulated, devices, make_batch=make_batch)
  np.testing.assert_allclose(acc_losses, big_losses, rtol=2e-5)
  np.testing.assert_allclose(acc_norms, big_norms, rtol=2e-4)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=5e-4),
    acc_state.params,
    big_state.params,
  )


def _linear_objective(params, model_state, frozen, batch, rng, train):
  """loss_sum = sum(weight * (w + 1) * x): at w = 0 both the loss and d loss / d w are the
  weighted sum of x."""
  del frozen, rng, train
  weighted = batch["weights"] * batch["x"]
  loss_sum = jnp.sum(weighted * (params["w"] + 1.0))
  metrics = {"x_sum": jnp.sum(weighted)}
  return LossOutput(loss_sum, jnp.sum(batch["weights"]), metrics, model_state)


@pytest.mark.parametrize("microbatches", [1, 2, 4])
def test_accumulation_divides_the_summed_loss_by_the_total_weight(microbatches):
  """Microbatches of very different token weight: the gradient is sum(w x) / sum(w) over the
  whole batch, never the mean of per-microbatch means.

  Microbatch m takes rows m, m + M, ...; with M = 2 it is rows {0, 2} (w.x = 2 + 2, weight 4,
  mean 1) and rows {1, 3} (w.x = 3 + 0, weight 1 + 0, mean 3). The whole batch: 7 / 5 = 1.4,
  whereas averaging the means would give (1 + 3) / 2 = 2 (and M = 4: (1 + 3 + 1 + 0) / 4)."""
  batch = {
    "x": np.array([[1, 1], [3, 5], [1, 1], [2, 7]], np.float32),
    "weights": np.array([[1, 1], [1, 0], [1, 1], [0, 0]], np.float32),
  }
  tx = optax.sgd(1.0)
  params = {"w": jnp.zeros((), jnp.float32)}
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    rng=jax.random.key(0),
    model_state={},
    frozen={},
  )
  step = jax.jit(make_train_step(_linear_objective, tx, optax.constant_schedule(1.0), microbatches))
  new, metrics = step(state, batch)
  assert float(metrics["weight"]) == 5.0
  np.testing.assert_allclose(float(metrics["loss"]), 1.4, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["grad_norm"]), 1.4, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["x_sum"]), 1.4, rtol=1e-6)
  np.testing.assert_allclose(float(new.params["w"]), -1.4, rtol=1e-6)  # w - lr * grad


def test_fused_linear_cross_entropy_matches_full_logits():
  devices = jax.devices()[:2]
  full = tiny_config()
  full.mesh.update(data=2)
  fused = tiny_config()
  fused.mesh.update(data=2)
  fused.model.loss_impl = "fused"
  full_losses, full_norms, _ = _losses(full, devices)
  fused_losses, fused_norms, _ = _losses(fused, devices)
  np.testing.assert_allclose(fused_losses, full_losses, rtol=1e-5)
  np.testing.assert_allclose(fused_norms, full_norms, rtol=1e-4)


def test_a_non_finite_step_changes_nothing_but_the_step_count():
  config = tiny_config()
  trainer = build_trainer(config, "", jax.devices()[:1], with_data=False)
  step = trainer.compile()
  state = trainer.create_state()
  before = jax.device_get((state.params, state.opt_state))
  batch = random_batch(config)
  batch["loss_weights"] = batch["loss_weights"].copy()
  batch["loss_weights"][0, 0] = np.nan
  state, metrics = step(state, to_global_batch(batch, trainer.batch_sharding))
  assert float(metrics["nonfinite"]) == 1.0 and int(state.step) == 1
  jax.tree.map(
    np.testing.assert_array_equal, jax.device_get((state.params, state.opt_state)), before
  )
  # The skipped step did not advance the optimizer's own count (its warm-up starts at lr 0).
  for _ in range(2):
    state, metrics = step(state, to_global_batch(random_batch(config), trainer.batch_sharding))
    assert float(metrics["nonfinite"]) == 0.0
  assert not np.array_equal(jax.device_get(state.params["embedding"]), before[0]["embedding"])
