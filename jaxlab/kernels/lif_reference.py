"""Reference spiking neuron in plain jnp: Heaviside spikes with surrogate gradients, and the
multi-step LIF neuron that the fused kernel (`lif`) must match.

The forward pass is exactly binary; only the backward pass sees the smooth surrogate. Both are
plain functions of arrays (no module state) so that the kernel can stand in for them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

SURROGATE_KINDS = ("arctan", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Surrogate:
  """Which smooth stand-in for the Heaviside derivative the backward pass uses.

  arctan:  dS/dx = (alpha / 2) / (1 + (pi * alpha * x / 2)^2)
  sigmoid: dS/dx = alpha * sigmoid(alpha * x) * (1 - sigmoid(alpha * x))
  """

  kind: str = "arctan"
  alpha: float = 2.0

  def __post_init__(self):
    if self.kind not in SURROGATE_KINDS:
      raise ValueError(f"unknown surrogate {self.kind!r}; choose from {', '.join(SURROGATE_KINDS)}")

  def gradient(self, x: jax.Array) -> jax.Array:
    """The surrogate derivative dS/dx at membrane offset x = H - V_th."""
    if self.kind == "arctan":
      return (self.alpha / 2) / (1 + (math.pi * self.alpha * x / 2) ** 2)
    sig = jax.nn.sigmoid(self.alpha * x)
    return self.alpha * sig * (1 - sig)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def spike(x: jax.Array, surrogate: Surrogate) -> jax.Array:
  """Heaviside(x) = 1 where x >= 0 else 0, differentiated through `surrogate`."""
  return (x >= 0).astype(x.dtype)


@spike.defjvp
def _spike_jvp(surrogate: Surrogate, primals, tangents):
  (x,), (x_dot,) = primals, tangents
  return spike(x, surrogate), surrogate.gradient(x) * x_dot


def lif_multistep(
  x_seq: jax.Array,
  tau: float = 2.0,
  v_th: float = 1.0,
  surrogate: Surrogate = Surrogate(),
  v_reset: float = 0.0,
) -> jax.Array:
  """Leaky integrate-and-fire over the leading time axis: input current [T, ...] -> spikes [T, ...].

  Per step: charge H = V + (X - (V - V_reset)) / tau, fire S = Heaviside(H - V_th), hard reset
  V = H (1 - S) + V_reset S with S stop-gradiented in the reset (the gradient flows through the
  charge only, as in SpikingJelly's detach_reset). V starts at V_reset. The scan is unrolled:
  T is small and XLA then fuses across steps (about 1.5x faster on CPU than a rolled loop).
  """

  def step(v, x):
    h = v + (x - (v - v_reset)) / tau
    s = spike(h - v_th, surrogate)
    fired = jax.lax.stop_gradient(s)
    return h * (1 - fired) + v_reset * fired, s

  v0 = jnp.full(x_seq.shape[1:], v_reset, x_seq.dtype)
  _, spikes = jax.lax.scan(step, v0, x_seq, unroll=True)
  return spikes
