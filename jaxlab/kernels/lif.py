"""Multi-step LIF neuron fused over time steps, with the surrogate-gradient backward as a kernel.

Same semantics and signature as `lif_reference.lif_multistep` (the reference):
H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau, S[t] = Heaviside(H[t] - V_th),
V[t] = H[t] (1 - S[t]) + V_reset S[t] with S stop-gradiented in the reset. The forward kernel
keeps V in registers/VMEM across all T steps and writes S and the charge H (float32, the only
residual); the backward kernel runs the reverse recurrence
  dH[t] = dS[t] * surrogate'(H[t] - V_th) + dV[t] (1 - S[t]),  dX[t] = dH[t] / tau,
  dV[t-1] = dH[t] (1 - 1/tau).
Neurons are flattened and tiled: TPU [T, rows, 128] with (T, block_rows, 128) blocks, GPU
[T, neurons] with (T, block) blocks; both use the same kernel bodies. Arithmetic is float32 for
any input dtype (the reference computes in the input dtype).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu

from jaxlab.kernels.dispatch import dispatch, resolve_target
from jaxlab.kernels.lif_reference import Surrogate
from jaxlab.kernels.lif_reference import lif_multistep as reference_lif
from jaxlab.kernels.tiling import pad_axis, round_up

LANES = 128


@dataclasses.dataclass(frozen=True)
class _Neuron:
  tau: float
  v_th: float
  v_reset: float
  surrogate: Surrogate

  def charge(self, v, x):
    return v + (x - (v - self.v_reset)) / self.tau

  def fire(self, h):
    return (h >= self.v_th).astype(jnp.float32)

  def reset(self, h, s):
    return h * (1 - s) + self.v_reset * s

  def charge_grad(self, h, ds, dv):
    """dL/dH from the spike's and the next membrane's cotangents."""
    return ds * self.surrogate.gradient(h - self.v_th) + dv * (1 - self.fire(h))


def _fwd_kernel(x_ref, s_ref, h_ref, *, neuron: _Neuron):
  def step(t, v):
    h = neuron.charge(v, x_ref[t].astype(jnp.float32))
    s = neuron.fire(h)
    s_ref[t] = s.astype(s_ref.dtype)
    h_ref[t] = h
    return neuron.reset(h, s)

  jax.lax.fori_loop(0, x_ref.shape[0], step, jnp.full(x_ref.shape[1:], neuron.v_reset, jnp.float32))


def _bwd_kernel(h_ref, ds_ref, dx_ref, *, neuron: _Neuron):
  steps = h_ref.shape[0]

  def step(i, dv):
    t = steps - 1 - i
    dh = neuron.charge_grad(h_ref[t], ds_ref[t].astype(jnp.float32), dv)
    dx_ref[t] = (dh / neuron.tau).astype(dx_ref.dtype)
    return dh * (1 - 1 / neuron.tau)

  jax.lax.fori_loop(0, steps, step, jnp.zeros(h_ref.shape[1:], jnp.float32))


def _tiled_call(kernel, arrays, out_dtypes, *, platform, block, interpret, name):
  """Runs `kernel` over [T, ...] arrays flattened per time step and tiled along neurons."""
  steps, shape = arrays[0].shape[0], arrays[0].shape[1:]
  neurons = math.prod(shape)
  if platform == "tpu":
    rows = round_up(-(-neurons // LANES), 8)
    block_rows = min(block, rows)
    rows = round_up(rows, block_rows)
    tiled = (steps, rows, LANES)
    spec = pl.BlockSpec((steps, block_rows, LANES), lambda i: (0, i, 0))
    grid = rows // block_rows
    params = pltpu.CompilerParams(dimension_semantics=("parallel",))
  else:
    width = min(block, pl.next_power_of_2(neurons))
    tiled = (steps, round_up(neurons, width))
    spec = pl.BlockSpec((steps, width), lambda i: (0, i))
    grid = tiled[1] // width
    params = plgpu.CompilerParams(num_warps=4)
  flat = [
    pad_axis(a.reshape(steps, neurons), 1, math.prod(tiled[1:])).reshape(tiled) for a in arrays
  ]
  outs = pl.pallas_call(
    kernel,
    grid=(grid,),
    in_specs=[spec] * len(flat),
    out_specs=[spec] * len(out_dtypes),
    out_shape=[jax.ShapeDtypeStruct(tiled, d) for d in out_dtypes],
    compiler_params=params,
    interpret=interpret,
    name=name,
  )(*flat)
  return [o.reshape(steps, -1)[:, :neurons].reshape((steps,) + shape) for o in outs]


@dataclasses.dataclass(frozen=True)
class _Impl:
  target: str
  block_rows: int  # TPU: rows of 128 neurons per tile
  block_gpu: int  # GPU: neurons per tile

  def _pick(self, kernel, out_dtypes, reference, name):
    def run(platform, block, *arrays, interpret):
      return tuple(
        _tiled_call(
          kernel,
          list(arrays),
          out_dtypes(*arrays),
          platform=platform,
          block=block,
          interpret=interpret,
          name=name,
        )
      )

    return dispatch(
      "lif_multistep",
      self.target,
      tpu=functools.partial(run, "tpu", self.block_rows),
      gpu=functools.partial(run, "gpu", self.block_gpu),
      reference=reference,
    )

  def forward(self, x, neuron):
    return self._pick(
      functools.partial(_fwd_kernel, neuron=neuron),
      lambda x: [x.dtype, jnp.float32],
      functools.partial(scan_forward, neuron=neuron),
      "lif_fwd",
    )(x)

  def backward(self, h, ds, neuron):
    return self._pick(
      functools.partial(_bwd_kernel, neuron=neuron),
      lambda h, ds: [ds.dtype],
      functools.partial(scan_backward, neuron=neuron),
      "lif_bwd",
    )(h, ds)


def scan_forward(x, *, neuron: _Neuron):
  """The kernels' forward as a jnp scan: (spikes in x.dtype, float32 charges H)."""

  def step(v, x_t):
    h = neuron.charge(v, x_t.astype(jnp.float32))
    s = neuron.fire(h)
    return neuron.reset(h, s), (s.astype(x.dtype), h)

  return jax.lax.scan(step, jnp.full(x.shape[1:], neuron.v_reset, jnp.float32), x)[1]


def scan_backward(h, ds, *, neuron: _Neuron):
  """The kernels' backward as a reverse jnp scan: (dX,)."""

  def step(dv, inputs):
    h_t, ds_t = inputs
    dh = neuron.charge_grad(h_t, ds_t.astype(jnp.float32), dv)
    return dh * (1 - 1 / neuron.tau), (dh / neuron.tau).astype(ds.dtype)

  return (jax.lax.scan(step, jnp.zeros(h.shape[1:], jnp.float32), (h, ds), reverse=True)[1],)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _lif(x, neuron: _Neuron, impl: _Impl):
  return impl.forward(x, neuron)[0]


def _lif_fwd(x, neuron, impl):
  spikes, charges = impl.forward(x, neuron)
  return spikes, charges


def _lif_bwd(neuron, impl, charges, ds):
  return impl.backward(charges, ds, neuron)


_lif.defvjp(_lif_fwd, _lif_bwd)


def lif_multistep(
  x_seq: jax.Array,
  tau: float = 2.0,
  v_th: float = 1.0,
  surrogate: Surrogate = Surrogate(),
  v_reset: float = 0.0,
  *,
  target: str | None = None,
  block_rows: int = 64,
  block_gpu: int = 1024,
) -> jax.Array:
  """Input current [T, ...] -> spikes [T, ...] (x_seq.dtype), differentiable via `surrogate`.
  `target` as in `jaxlab.kernels.dispatch`; "reference" is `lif_reference`'s jnp scan."""
  target = resolve_target(target)
  if target == "reference":
    return reference_lif(x_seq, tau, v_th, surrogate, v_reset)
  return _lif(
    x_seq,
    _Neuron(float(tau), float(v_th), float(v_reset), surrogate),
    _Impl(target, block_rows, block_gpu),
  )
