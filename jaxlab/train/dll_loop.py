"""Training pieces for the DLL study: optimizer, one jitted epoch, accuracy.

The loss is label-smoothed softmax cross-entropy *summed* over the batch (and time), so the
logits' cotangent is exactly -xi_L = softmax(z) - y_smooth per example and the DLL layers' updates
are batch sums, as in the spec (and the spec's clip bounds keep their meaning). Adam is
invariant to that scale for BP and FA. jax.grad of this loss gives backprop's gradients or, for
the DLL and FA layers, their local updates (jaxlab.models.dll).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.train.state import TrainState

Params = Any
Apply = Callable[[Params, jax.Array], jax.Array]


def param_labels(params: Params) -> Params:
  """"theta" for feedback matrices (keys starting with theta), "w" for everything else."""
  def label(path, _):
    name = str(getattr(path[-1], "key", ""))
    return "theta" if name.startswith("theta") else "w"

  return jax.tree_util.tree_map_with_path(label, params)


def build_optimizer(opt_cfg: ml_collections.ConfigDict, total_steps: int,
                    learns_theta: bool) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with separate state per tensor and a linear decay to 0 over `total_steps`; Theta's
  peak rate is `lr * theta_lr_ratio`; Theta is left unchanged when the rule does not learn it."""
  schedule = optax.linear_schedule(opt_cfg.lr, 0.0, total_steps)

  def adam(scale: float) -> optax.GradientTransformation:
    return optax.adam(lambda step: scale * schedule(step), b1=opt_cfg.b1, b2=opt_cfg.b2,
                      eps=opt_cfg.eps)

  theta = adam(opt_cfg.theta_lr_ratio) if learns_theta else optax.set_to_zero()
  return optax.multi_transform({"w": adam(1.0), "theta": theta}, param_labels), schedule


def smoothed_cross_entropy_sum(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """Sum over all predictions of CE(softmax(logits), smoothed one-hot(labels))."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets).sum()


def create_state(init: Callable[[jax.Array], Params], tx: optax.GradientTransformation,
                 seed: int) -> TrainState:
  """Parameters from `seed`, fresh optimizer state, and the key that orders the epochs' batches."""

  @jax.jit
  def create(key):
    params_rng, data_rng = jax.random.split(key)
    params = init(params_rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=data_rng)

  return create(jax.random.PRNGKey(seed))


def make_train_step(apply: Apply, tx: optax.GradientTransformation, smoothing: float):
  """(state, x, y) -> (state, summed loss) for one batch."""

  def train_step(state: TrainState, x: jax.Array, y: jax.Array):
    loss, grads = jax.value_and_grad(
        lambda p: smoothed_cross_entropy_sum(apply(p, x), y, smoothing))(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), loss

  return train_step


def make_train_epoch(train_step, batch_size: int, steps_per_epoch: int):
  """One epoch over device-resident data x, y: a permutation drawn from (rng, epoch), so a resumed
  run sees the same batches, then `steps_per_epoch` jitted steps (the remainder is dropped).
  Returns the new state and the mean loss per prediction.

  Steps are dispatched from Python rather than scanned: XLA:CPU runs convolutions inside a
  while loop about 15x slower than as separate calls, and a dispatch costs far less than a step.
  """
  step = jax.jit(lambda state, x, y, idx: train_step(state, x[idx], y[idx]), donate_argnums=0)

  @functools.partial(jax.jit, static_argnums=2)
  def epoch_order(rng, epoch, n):
    order = jax.random.permutation(jax.random.fold_in(rng, epoch), n)
    return order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)

  def train_epoch(state: TrainState, x: jax.Array, y: jax.Array):
    order = np.asarray(epoch_order(state.rng, int(state.step) // steps_per_epoch, x.shape[0]))
    total = jnp.zeros(())
    for idx in order:
      state, loss = step(state, x, y, idx)
      total += loss
    return state, total / (order.size * np.prod(y.shape[1:], dtype=int))

  return train_epoch


def make_accuracy(apply: Apply,
                  eval_batch: int) -> Callable[[Params, np.ndarray, np.ndarray], float]:
  """Fraction of correct argmax predictions, over chunks of `eval_batch` examples."""

  @jax.jit
  def correct(params, x, y):
    return jnp.sum(jnp.argmax(apply(params, x), axis=-1) == y)

  def accuracy(params, x, y):
    total = sum(int(correct(params, x[i:i + eval_batch], y[i:i + eval_batch]))
                for i in range(0, len(x), eval_batch))
    return total / y.size

  return accuracy
