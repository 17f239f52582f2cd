"""The sharded LM train step: loss, gradient accumulation over microbatches, optimizer update."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from jaxlab.objectives.lm import weighted_cross_entropy
from jaxlab.train.state import TrainState

Batch = dict[str, jax.Array]
BATCH_AXES = ("act_batch", "act_length")


def lm_loss_sums(model: nn.Module, params: Any, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """(sum of weighted token losses, sum of weights) of one (micro)batch.

  `model.cfg.loss_impl == "fused"` computes the output projection and the loss together in
  vocabulary chunks, never materializing the [tokens, vocab] logits.
  """
  inputs = (batch["inputs"], batch["segment_ids"], batch["positions"])
  if model.cfg.loss_impl == "fused":
    hidden, head = model.apply({"params": params}, *inputs, return_hidden=True)
    loss_sum, weight_sum, _ = fused_linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]), head, batch["targets"].reshape(-1),
        batch["loss_weights"].reshape(-1).astype(jnp.float32))
    return loss_sum, weight_sum
  logits, _ = model.apply({"params": params}, *inputs)
  return weighted_cross_entropy(logits, batch["targets"], batch["loss_weights"])


def split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
  """[B, T] -> [M, B/M, T], microbatch m taking rows m, m+M, ... so that each device's rows
  spread evenly over the microbatches and no data moves between devices."""

  def split(x):
    rows = x.shape[0] // num_microbatches
    x = x.reshape(rows, num_microbatches, *x.shape[1:]).swapaxes(0, 1)
    return nn.with_logical_constraint(x, (None,) + BATCH_AXES)

  return jax.tree.map(split, batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    num_microbatches: int = 1) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
  """Builds `step(state, batch) -> (state, metrics)`; jit it with shardings and donation.

  Gradients of the summed loss are accumulated over microbatches and divided once by the total
  token weight, so M microbatches give the gradient of the full batch's mean loss.
  """
  grad_fn = jax.value_and_grad(lambda p, b: lm_loss_sums(model, p, b), has_aux=True)

  def step(state: TrainState, batch: Batch):
    if num_microbatches == 1:
      (loss_sum, weight_sum), grads = grad_fn(state.params, batch)
    else:
      def accumulate(carry, microbatch):
        (loss_sum, weight_sum), grads = grad_fn(state.params, microbatch)
        acc_loss, acc_weight, acc_grads = carry
        return (acc_loss + loss_sum, acc_weight + weight_sum,
                jax.tree.map(jnp.add, acc_grads, grads)), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
      (loss_sum, weight_sum, grads), _ = jax.lax.scan(
          accumulate, init, split_microbatches(batch, num_microbatches))
    denominator = jnp.maximum(weight_sum, 1.0)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss_sum / denominator, "grad_norm": optax.tree.norm(grads),
               "learning_rate": schedule(state.step), "tokens": weight_sum}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              rng=jax.random.fold_in(state.rng, state.step))
    return new_state, metrics

  return step


def make_eval_step(model: nn.Module) -> Callable[[Any, Batch], dict]:
  """`eval_step(params, batch) -> {"loss_sum", "weight_sum"}` for held-out loss."""

  def eval_step(params, batch):
    loss_sum, weight_sum = lm_loss_sums(model, params, batch)
    return {"loss_sum": loss_sum, "weight_sum": weight_sum}

  return eval_step
