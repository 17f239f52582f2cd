"""XNOR spiking attention with the Gray-code relative bias, tiled so that the [L, L] score
matrix never reaches HBM.

For binary q, k [..., L, D], values v [..., L, Dv] and binary position codes [L, nb] (Gray codes
G(n) = n XOR (n >> 1), `jaxlab.models.positional.gray_position_codes`):
  out = ((A + B) V) * scale,  A_ij = D - sum(q_i) - sum(k_j) + 2 q_i.k_j  (matching bits),
  B_ij = nb - Hamming(code_i, code_j),
exactly `xnor_attention_reference.xnor_attention` on codes appended to q and k. With
+-1 vectors q~ = [2q - 1, 2c - 1] this is ((q~ k~^T + D + nb) / 2) V: one matmul per tile
(`xnor_kernels`). Note that without a softmax the product also re-associates into
q~ (k~^T V), linear in L; the tiled kernel keeps the quadratic form the reference computes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxlab.kernels import xnor_kernels
from jaxlab.kernels.dispatch import dispatch, resolve_target
from jaxlab.kernels.tiling import pad_axis, round_up
from jaxlab.kernels.xnor_attention_reference import append_position_codes, reference_xnor_attention


def _signed_reference(q, k, v, *, dim):
  """The kernels' computation in jnp: ((q k^T + dim) / 2) v for +-1 (or zero-padded) q, k."""
  s = 0.5 * (jnp.einsum("nqf,nkf->nqk", q, k, preferred_element_type=jnp.float32) + dim)
  return jnp.einsum("nqk,nkd->nqd", s.astype(v.dtype), v)


@dataclasses.dataclass(frozen=True)
class _Impl:
  target: str
  dim: int  # D + nb: the feature count of the unpadded +-1 vectors
  block_q: int
  block_kv: int

  def _call(self, tpu, gpu, reference, *args):
    sizes = dict(dim=self.dim, block_q=self.block_q, block_kv=self.block_kv)
    return dispatch(
      "xnor_attention",
      self.target,
      tpu=functools.partial(tpu, **sizes),
      gpu=functools.partial(gpu, **sizes),
      reference=reference,
    )(*args)

  def forward(self, q, k, v):
    return self._call(
      xnor_kernels.tpu_forward,
      xnor_kernels.gpu_forward,
      functools.partial(_signed_reference, dim=self.dim),
      q,
      k,
      v,
    )

  def backward(self, q, k, v, do):
    def reference(q, k, v, do):
      return jax.vjp(functools.partial(_signed_reference, dim=self.dim), q, k, v)[1](do)

    return self._call(xnor_kernels.tpu_backward, xnor_kernels.gpu_backward, reference, q, k, v, do)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _tiled(q, k, v, impl: _Impl):
  return impl.forward(q, k, v)


def _tiled_fwd(q, k, v, impl):
  return impl.forward(q, k, v), (q, k, v)


def _tiled_bwd(impl, residuals, do):
  return impl.backward(*residuals, do)


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def _signed(x: jax.Array, codes: jax.Array | None, length: int, features: int) -> jax.Array:
  """[N, length, features]: [2x - 1, 2codes - 1], zero-padded (zeros add nothing to dots)."""
  if codes is not None:
    x = append_position_codes(x, codes)
  x = (2 * x - 1).reshape((-1,) + x.shape[-2:])
  return pad_axis(pad_axis(x, 1, length), 2, features)


def xnor_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  scale: jax.Array | float,
  codes: jax.Array | None = None,
  *,
  target: str | None = None,
  block_q: int = 128,
  block_kv: int = 128,
) -> jax.Array:
  """((XNOR(q, k) + nb - Hamming(codes_i, codes_j)) v) * scale for binary q, k [..., L, D],
  v [..., L, Dv], codes [L, nb] or None; gradients for q, k, v and scale. `target` as in
  `jaxlab.kernels.dispatch`."""
  target = resolve_target(target)
  if target == "reference":
    return reference_xnor_attention(q, k, v, scale, codes)
  lq, lk, dv = q.shape[-2], k.shape[-2], v.shape[-1]
  dim = q.shape[-1] + (0 if codes is None else codes.shape[-1])
  bq = min(block_q, pl.next_power_of_2(max(lq, 16)))
  bk = min(block_kv, pl.next_power_of_2(max(lk, 16)))
  features, dv_pad = pl.next_power_of_2(dim), pl.next_power_of_2(dv)
  qs = _signed(q, codes, round_up(lq, bq), features)
  ks = _signed(k, codes, round_up(lk, bk), features)
  vs = pad_axis(pad_axis(v.reshape((-1,) + v.shape[-2:]), 1, ks.shape[1]), 2, dv_pad)
  out = _tiled(qs, ks, vs, _Impl(target, dim, bq, bk))[:, :lq, :dv]
  return out.reshape(q.shape[:-1] + (dv,)) * scale
