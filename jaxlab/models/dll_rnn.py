"""DLL recurrent network as one custom VJP over the whole sequence (docs/dll.md, recurrent net).

h_t = f(h_{t-1} W_h + x_t W_x) with h_0 = 0, y_t = h_t W_y. Given the logits' cotangent
g_t = -xi^y_t, errors run backward in time through Theta_y, Theta_h instead of W_y^T, W_h^T:
  xi^h_T = xi^y_T Theta_y^T;  xi^h_t = clip(xi^y_t Theta_y^T + delta_{t+1} Theta_h^T);
  delta_t = xi^h_t * f'(z_t).
Updates are outer products summed over batch and time, scaled and clipped like the dense layers:
  dW_y = sum h_t^T xi^y_t, dW_h = sum h_{t-1}^T delta_t, dW_x = sum x_t^T delta_t,
  dTheta_y = sign * sum xi^h_t^T xi^y_t, dTheta_h = sign * sum_{t>1} xi^h_{t-1}^T delta_t.
The per-timestep sums need the total error at h_t (readout plus recurrence), which is why this
is one sequence-level rule rather than a composition of per-step layers. Cotangents are the
negated updates (see jaxlab.models.dll for the sign convention); x gets none (it is data).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlab.models.dll import DLLOptions, LearningRule, activate, activation_derivative, clip_values

Params = dict[str, jax.Array]


def rnn_states(params: Params, xs: jax.Array, activation: str) -> tuple[jax.Array, jax.Array]:
  """Pre-activations z and hidden states h, both [B, T, H], for inputs xs [B, T, in]."""
  input_drive = jnp.swapaxes(xs @ params["w_x"], 0, 1)

  def step(h, drive):
    z = h @ params["w_h"] + drive
    h = activate(z, activation)
    return h, (z, h)

  h0 = jnp.zeros((xs.shape[0], params["w_h"].shape[0]), xs.dtype)
  _, (zs, hs) = jax.lax.scan(step, h0, input_drive)
  return jnp.swapaxes(zs, 0, 1), jnp.swapaxes(hs, 0, 1)


def rnn_logits(params: Params, xs: jax.Array, activation: str = "tanh") -> jax.Array:
  """The network's function, differentiated directly for backprop."""
  _, hs = rnn_states(params, xs, activation)
  return hs @ params["w_y"]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dll_rnn(params: Params, xs: jax.Array, options: DLLOptions) -> jax.Array:
  """Logits [B, T, out]; the cotangents of `params` are the DLL updates (module doc)."""
  return rnn_logits(params, xs, options.activation)


def _dll_rnn_fwd(params, xs, options):
  zs, hs = rnn_states(params, xs, options.activation)
  return hs @ params["w_y"], (params, xs, zs, hs)


def _dll_rnn_bwd(options, residuals, g):
  params, xs, zs, hs = residuals
  xi_y = -g
  readout_error = xi_y @ params["theta_y"].T
  derivative = activation_derivative(zs, options.activation)

  def step(next_delta, inputs):
    readout, slope = inputs
    xi_h = clip_values(readout + next_delta @ params["theta_h"].T, options.clip)
    delta = xi_h * slope
    return delta, (xi_h, delta)

  last_delta = jnp.zeros_like(hs[:, 0])
  _, (xi_h, delta) = jax.lax.scan(
    step,
    last_delta,
    (jnp.swapaxes(readout_error, 0, 1), jnp.swapaxes(derivative, 0, 1)),
    reverse=True,
  )
  xi_h, delta = jnp.swapaxes(xi_h, 0, 1), jnp.swapaxes(delta, 0, 1)
  h_prev = jnp.concatenate([jnp.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)

  def outer(a, b):  # sum over batch and time of a_t^T b_t
    return clip_values(options.scale * jnp.einsum("bti,bto->io", a, b), options.clip)

  updates = {"w_x": outer(xs, delta), "w_h": outer(h_prev, delta), "w_y": outer(hs, xi_y)}
  if options.freeze_theta:
    updates.update(
      theta_h=jnp.zeros_like(params["theta_h"]), theta_y=jnp.zeros_like(params["theta_y"])
    )
  else:
    updates.update(
      theta_h=options.theta_sign * outer(xi_h[:, :-1], delta[:, 1:]),
      theta_y=options.theta_sign * outer(xi_h, xi_y),
    )
  return {k: -updates[k] for k in params}, jnp.zeros_like(xs)


dll_rnn.defvjp(_dll_rnn_fwd, _dll_rnn_bwd)


def rnn(rule: LearningRule, params: Params, xs: jax.Array, activation: str = "tanh") -> jax.Array:
  """Logits of the recurrent network learning by `rule` (inner form only)."""
  options = rule.options(activation, is_first=False)
  if options is None:
    return rnn_logits(params, xs, activation)
  return dll_rnn(params, xs, options)
