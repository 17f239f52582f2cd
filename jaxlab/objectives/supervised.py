"""Supervised objectives on (inputs, targets) batches: classification and regression.

The model is a `Predict` function, so a plain functional net (the DLL nets, whose custom-VJP
layers make `jax.grad` return their local updates) and a linen module with BatchNorm statistics
(Spikformer) plug in the same way. An optional per-example `weights` entry (0 for the padding
rows of a fixed-size evaluation batch) scales each example's loss and metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxlab.objectives.base import Batch, LossOutput, PyTree

# (params, model_state, inputs, train) -> (outputs, updated model_state)
Predict = Callable[[PyTree, PyTree, jax.Array, bool], tuple[jax.Array, PyTree]]


def _example_weights(batch: Batch, per_example_shape: tuple[int, ...]) -> jax.Array:
  """Per-prediction weights broadcast over the trailing prediction axes (e.g. time)."""
  weights = batch.get("weights")
  if weights is None:
    weights = jnp.ones(batch["targets"].shape[:1], jnp.float32)
  return jnp.broadcast_to(
    weights.reshape(weights.shape + (1,) * len(per_example_shape)),
    weights.shape + per_example_shape,
  ).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Classification:
  """Softmax cross-entropy against (optionally smoothed) integer labels, summed over predictions.

  Labels are [B] or [B, T] (one prediction per time step); the weight sum counts predictions, so
  the reported loss is the mean per prediction and the `accuracy` metric a fraction.
  """

  predict: Predict
  label_smoothing: float = 0.0

  def __call__(
    self,
    params: PyTree,
    model_state: PyTree,
    frozen: PyTree,
    batch: Batch,
    rng: jax.Array,
    train: bool,
  ) -> LossOutput:
    del frozen, rng
    logits, model_state = self.predict(params, model_state, batch["inputs"], train)
    labels = batch["targets"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.label_smoothing)
    weights = _example_weights(batch, labels.shape[1:])
    losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return LossOutput(
      jnp.sum(losses * weights),
      jnp.sum(weights),
      {"accuracy": jnp.sum(correct * weights)},
      model_state,
    )


@dataclasses.dataclass(frozen=True)
class Regression:
  """Squared error summed over every output value; the weight sum counts values (loss = MSE)."""

  predict: Predict

  def __call__(
    self,
    params: PyTree,
    model_state: PyTree,
    frozen: PyTree,
    batch: Batch,
    rng: jax.Array,
    train: bool,
  ) -> LossOutput:
    del frozen, rng
    outputs, model_state = self.predict(params, model_state, batch["inputs"], train)
    weights = _example_weights(batch, batch["targets"].shape[1:])
    errors = (outputs.astype(jnp.float32) - batch["targets"]) ** 2
    return LossOutput(jnp.sum(errors * weights), jnp.sum(weights), {}, model_state)
