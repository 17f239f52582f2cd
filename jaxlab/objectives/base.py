"""The objective interface: what the one train-step builder turns into a sharded step.

An objective maps (parameters, mutable model state, frozen state, batch, rng) to a `LossOutput`
of *sums*: the weighted loss, the total weight, and metric sums. The step adds sums over
microbatches and data shards and divides once, so a batch split any way gives the same gradient
and the same metrics. Metrics are divided by the same total weight (a count of correct examples
becomes an accuracy). Mutable state (BatchNorm statistics) comes back updated; frozen state (such
as the reference model DPO and SCIR compare against) is read only
and never differentiated.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

PyTree = Any
Batch = dict[str, jax.Array]


class LossOutput(NamedTuple):
  """Loss and metric sums of one (micro)batch; `model_state` is the updated mutable state."""

  loss_sum: jax.Array
  weight_sum: jax.Array
  metrics: dict[str, jax.Array]
  model_state: PyTree


class Objective(Protocol):
  """A loss over batches of one kind; `train=False` is evaluation (no state updates)."""

  def __call__(
    self,
    params: PyTree,
    model_state: PyTree,
    frozen: PyTree,
    batch: Batch,
    rng: jax.Array,
    train: bool,
  ) -> LossOutput: ...
