"""One train-step builder for every objective: microbatch accumulation, one division, update.

`make_train_step(objective, ...)` returns `step(state, batch) -> (state, metrics)`; the trainer
jits it with the state's and the batch's shardings and donates the state. Loss, weight and
metric sums are added over microbatches and divided once by the total weight, so M microbatches
give exactly the gradient and metrics of the whole batch. A step whose loss or gradient norm is
not finite changes nothing but the step count (metric `nonfinite` = 1).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxlab.objectives.base import Batch, Objective
from jaxlab.train.state import TrainState

BATCH_AXIS = "act_batch"
StepFn = Callable[[TrainState, Batch], tuple[TrainState, dict]]


def batch_logical_axes(ndim: int) -> tuple[str | None, ...]:
  """Logical axes of a batch array: rows on the batch axis, everything else unsharded."""
  return (BATCH_AXIS,) + (None,) * (ndim - 1)


def split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
  """[B, ...] -> [M, B/M, ...], microbatch m taking rows m, m+M, ... so that each device's rows
  spread evenly over the microbatches and no data moves between devices."""

  def split(x):
    rows = x.shape[0] // num_microbatches
    x = x.reshape(rows, num_microbatches, *x.shape[1:]).swapaxes(0, 1)
    return nn.with_logical_constraint(x, (None,) + batch_logical_axes(x.ndim - 1))

  return jax.tree.map(split, batch)


def _divide(sums: dict[str, jax.Array], weight: jax.Array) -> dict[str, jax.Array]:
  return {k: v / weight for k, v in sums.items()}


def make_train_step(
  objective: Objective,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  num_microbatches: int = 1,
) -> StepFn:
  """Builds `step(state, batch) -> (state, metrics)` for `objective`."""

  def loss_fn(params, model_state, frozen, batch, rng):
    out = objective(params, model_state, frozen, batch, rng, True)
    return out.loss_sum, out

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def microbatch_grads(model_state, microbatch, index):
      (_, out), grads = grad_fn(
        state.params, model_state, state.frozen, microbatch, jax.random.fold_in(rng, index)
      )
      return out, grads

    if num_microbatches == 1:
      out, grads = microbatch_grads(state.model_state, batch, 0)
      loss_sum, weight_sum, metric_sums, model_state = out
    else:

      def accumulate(carry, indexed):
        index, microbatch = indexed
        loss_acc, weight_acc, metrics_acc, grads_acc, model_state = carry
        out, grads = microbatch_grads(model_state, microbatch, index)
        return (
          loss_acc + out.loss_sum,
          weight_acc + out.weight_sum,
          jax.tree.map(jnp.add, metrics_acc, out.metrics),
          jax.tree.map(jnp.add, grads_acc, grads),
          out.model_state,
        ), None

      microbatches = split_microbatches(batch, num_microbatches)
      first = jax.tree.map(lambda x: x[0], microbatches)
      metric_shapes = jax.eval_shape(
        lambda: objective(state.params, state.model_state, state.frozen, first, rng, True)
      )
      zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa: E731
      init = (
        jnp.zeros((), jnp.float32),
        jnp.zeros((), jnp.float32),
        zeros(metric_shapes.metrics),
        zeros(state.params),
        state.model_state,
      )
      (loss_sum, weight_sum, metric_sums, grads, model_state), _ = jax.lax.scan(
        accumulate, init, (jnp.arange(num_microbatches), microbatches)
      )
    denominator = jnp.maximum(weight_sum, 1e-9)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    loss, grad_norm = loss_sum / denominator, optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A non-finite loss or gradient is never applied: the step keeps the old parameters,
    # optimizer and model state (the data still moves on), and reports itself as skipped.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    metrics = {
      "loss": loss,
      "grad_norm": grad_norm,
      "learning_rate": schedule(state.step),
      "weight": weight_sum,
      "nonfinite": 1.0 - finite.astype(jnp.float32),
      **_divide(metric_sums, denominator),
    }
    return state.replace(
      step=state.step + 1,
      params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      model_state=keep(model_state, state.model_state),
    ), metrics

  return step


def make_eval_step(objective: Objective) -> Callable[[TrainState, Batch], dict]:
  """`eval_step(state, batch) -> {"loss_sum", "weight_sum", metric sums}` (evaluation mode)."""

  def eval_step(state: TrainState, batch: Batch) -> dict:
    out = objective(state.params, state.model_state, state.frozen, batch, state.rng, False)
    return {"loss_sum": out.loss_sum, "weight_sum": out.weight_sum, **out.metrics}

  return eval_step


def evaluation_metrics(sums: dict[str, float], prefix: str) -> dict[str, float]:
  """`{prefix}_loss` and `{prefix}_{metric}` from the sums an evaluation accumulated."""
  weight = max(sums.pop("weight_sum"), 1e-9)
  return {
    f"{prefix}_loss": sums.pop("loss_sum") / weight,
    **{f"{prefix}_{k}": v / weight for k, v in sums.items()},
  }
