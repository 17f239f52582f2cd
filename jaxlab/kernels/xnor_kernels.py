"""Tiled XNOR-attention kernels for TPU (Mosaic) and GPU (Triton): O = S V with
S = (Q K^T + D) / 2 for +-1 inputs Q, K [N, L, D] (the matching-bit count of the binary
vectors), forward, dQ and dK/dV. S is recomputed per [block_q, block_kv] tile and never stored.

Inputs are padded by the caller: zero rows and feature columns contribute nothing to Q K^T, and
padded key rows carry zero values. No softmax, so dS = dO V^T directly, and dQ = dS K / 2,
dK = dS^T Q / 2 (derivatives by the +-1 inputs; the caller's autodiff maps them back to the
binary ones).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu

_NT_DIMS = (((1,), (1,)), ((), ()))
_TPU_PARAMS = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary"))


def _scores(q, k, dim):
  return 0.5 * (jax.lax.dot_general(q, k, _NT_DIMS, preferred_element_type=jnp.float32) + dim)


def _dscores(do, v):
  """dL/dS, halved: the factor that S = (Q K^T + D) / 2 puts on dL/dQ = dL/dS K and dL/dK."""
  return 0.5 * jax.lax.dot_general(do, v, _NT_DIMS, preferred_element_type=jnp.float32)


def _mm(a, b):
  return jnp.dot(a.astype(b.dtype), b, preferred_element_type=jnp.float32)


# TPU: the innermost grid axis reduces into VMEM scratch.


def _accumulate(acc, update, out_ref, axis=2):
  j = pl.program_id(axis)

  @pl.when(j == 0)
  def _init():
    acc[...] = jnp.zeros_like(acc)

  acc[...] += update()

  @pl.when(j == pl.num_programs(axis) - 1)
  def _finish():
    out_ref[...] = acc[...].astype(out_ref.dtype)


def _tpu_fwd_kernel(q_ref, k_ref, v_ref, o_ref, acc, *, dim):
  _accumulate(acc, lambda: _mm(_scores(q_ref[...], k_ref[...], dim), v_ref[...]), o_ref)


def _tpu_dq_kernel(k_ref, v_ref, do_ref, dq_ref, acc):
  _accumulate(acc, lambda: _mm(_dscores(do_ref[...], v_ref[...]), k_ref[...]), dq_ref)


def _tpu_dkv_kernel(q_ref, k_ref, v_ref, do_ref, dk_ref, dv_ref, dk_acc, dv_acc, *, dim):
  s = _scores(q_ref[...], k_ref[...], dim)
  ds = _dscores(do_ref[...], v_ref[...])
  _accumulate(dv_acc, lambda: _mm(s.T, do_ref[...]), dv_ref)
  _accumulate(dk_acc, lambda: _mm(ds.T, q_ref[...]), dk_ref)


def tpu_forward(q, k, v, *, dim, block_q, block_kv, interpret):
  """q, k [N, Lq, F] / [N, Lk, F] (+-1, padded), v [N, Lk, Dv] -> S V [N, Lq, Dv]."""
  (n, lq, f), lk, dv = q.shape, k.shape[1], v.shape[2]
  return pl.pallas_call(
    functools.partial(_tpu_fwd_kernel, dim=dim),
    grid=(n, lq // block_q, lk // block_kv),
    in_specs=[
      pl.BlockSpec((None, block_q, f), lambda b, i, j: (b, i, 0)),
      pl.BlockSpec((None, block_kv, f), lambda b, i, j: (b, j, 0)),
      pl.BlockSpec((None, block_kv, dv), lambda b, i, j: (b, j, 0)),
    ],
    out_specs=pl.BlockSpec((None, block_q, dv), lambda b, i, j: (b, i, 0)),
    out_shape=jax.ShapeDtypeStruct((n, lq, dv), v.dtype),
    scratch_shapes=[pltpu.VMEM((block_q, dv), jnp.float32)],
    compiler_params=_TPU_PARAMS,
    interpret=interpret,
    name="xnor_attention_fwd",
  )(q, k, v)


def tpu_backward(q, k, v, do, *, dim, block_q, block_kv, interpret):
  """(dQ, dK, dV) of S V for the +-1 inputs, from the output cotangent do [N, Lq, Dv]."""
  (n, lq, f), lk, dv = q.shape, k.shape[1], v.shape[2]
  dq = pl.pallas_call(
    _tpu_dq_kernel,
    grid=(n, lq // block_q, lk // block_kv),
    in_specs=[
      pl.BlockSpec((None, block_kv, f), lambda b, i, j: (b, j, 0)),
      pl.BlockSpec((None, block_kv, dv), lambda b, i, j: (b, j, 0)),
      pl.BlockSpec((None, block_q, dv), lambda b, i, j: (b, i, 0)),
    ],
    out_specs=pl.BlockSpec((None, block_q, f), lambda b, i, j: (b, i, 0)),
    out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
    scratch_shapes=[pltpu.VMEM((block_q, f), jnp.float32)],
    compiler_params=_TPU_PARAMS,
    interpret=interpret,
    name="xnor_attention_dq",
  )(k, v, do)
  kv_spec = pl.BlockSpec((None, block_kv, f), lambda b, j, i: (b, j, 0))
  v_spec = pl.BlockSpec((None, block_kv, dv), lambda b, j, i: (b, j, 0))
  dk, dvv = pl.pallas_call(
    functools.partial(_tpu_dkv_kernel, dim=dim),
    grid=(n, lk // block_kv, lq // block_q),
    in_specs=[
      pl.BlockSpec((None, block_q, f), lambda b, j, i: (b, i, 0)),
      kv_spec,
      v_spec,
      pl.BlockSpec((None, block_q, dv), lambda b, j, i: (b, i, 0)),
    ],
    out_specs=[kv_spec, v_spec],
    out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
    scratch_shapes=[
      pltpu.VMEM((block_kv, f), jnp.float32),
      pltpu.VMEM((block_kv, dv), jnp.float32),
    ],
    compiler_params=_TPU_PARAMS,
    interpret=interpret,
    name="xnor_attention_dkv",
  )(q, k, v, do)
  return dq, dk, dvv


# GPU: one program per block of the output, looping over the other sequence.


def _loop(n_blocks, block, body, init):
  return jax.lax.fori_loop(0, n_blocks, lambda j, c: body(pl.ds(j * block, block), c), init)


def _gpu_fwd_kernel(q_ref, k_ref, v_ref, o_ref, *, dim, block_kv):
  q = q_ref[...]

  def body(kv, acc):
    return acc + _mm(_scores(q, k_ref[kv, :], dim), v_ref[kv, :])

  acc = jnp.zeros(o_ref.shape, jnp.float32)
  o_ref[...] = _loop(k_ref.shape[0] // block_kv, block_kv, body, acc).astype(o_ref.dtype)


def _gpu_dq_kernel(k_ref, v_ref, do_ref, dq_ref, *, block_kv):
  do = do_ref[...]

  def body(kv, acc):
    return acc + _mm(_dscores(do, v_ref[kv, :]), k_ref[kv, :])

  acc = jnp.zeros(dq_ref.shape, jnp.float32)
  dq_ref[...] = _loop(k_ref.shape[0] // block_kv, block_kv, body, acc).astype(dq_ref.dtype)


def _gpu_dkv_kernel(q_ref, k_ref, v_ref, do_ref, dk_ref, dv_ref, *, dim, block_q):
  k, v = k_ref[...], v_ref[...]

  def body(rows, carry):
    dk, dv = carry
    q, do = q_ref[rows, :], do_ref[rows, :]
    return (dk + _mm(_dscores(do, v).T, q), dv + _mm(_scores(q, k, dim).T, do))

  init = (jnp.zeros(dk_ref.shape, jnp.float32), jnp.zeros(dv_ref.shape, jnp.float32))
  dk, dv = _loop(q_ref.shape[0] // block_q, block_q, body, init)
  dk_ref[...] = dk.astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def gpu_forward(q, k, v, *, dim, block_q, block_kv, interpret):
  """As `tpu_forward`; feature dims must be powers of two."""
  (n, lq, f), lk, dv = q.shape, k.shape[1], v.shape[2]
  return pl.pallas_call(
    functools.partial(_gpu_fwd_kernel, dim=dim, block_kv=block_kv),
    grid=(n, lq // block_q),
    in_specs=[
      pl.BlockSpec((None, block_q, f), lambda b, i: (b, i, 0)),
      pl.BlockSpec((None, lk, f), lambda b, i: (b, 0, 0)),
      pl.BlockSpec((None, lk, dv), lambda b, i: (b, 0, 0)),
    ],
    out_specs=pl.BlockSpec((None, block_q, dv), lambda b, i: (b, i, 0)),
    out_shape=jax.ShapeDtypeStruct((n, lq, dv), v.dtype),
    compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
    interpret=interpret,
    name="xnor_attention_fwd",
  )(q, k, v)


def gpu_backward(q, k, v, do, *, dim, block_q, block_kv, interpret):
  """As `tpu_backward`; feature dims must be powers of two."""
  (n, lq, f), lk, dv = q.shape, k.shape[1], v.shape[2]
  params = plgpu.CompilerParams(num_warps=4, num_stages=2)
  dq = pl.pallas_call(
    functools.partial(_gpu_dq_kernel, block_kv=block_kv),
    grid=(n, lq // block_q),
    in_specs=[
      pl.BlockSpec((None, lk, f), lambda b, i: (b, 0, 0)),
      pl.BlockSpec((None, lk, dv), lambda b, i: (b, 0, 0)),
      pl.BlockSpec((None, block_q, dv), lambda b, i: (b, i, 0)),
    ],
    out_specs=pl.BlockSpec((None, block_q, f), lambda b, i: (b, i, 0)),
    out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
    compiler_params=params,
    interpret=interpret,
    name="xnor_attention_dq",
  )(k, v, do)
  kv_spec = pl.BlockSpec((None, block_kv, f), lambda b, j: (b, j, 0))
  v_spec = pl.BlockSpec((None, block_kv, dv), lambda b, j: (b, j, 0))
  dk, dvv = pl.pallas_call(
    functools.partial(_gpu_dkv_kernel, dim=dim, block_q=block_q),
    grid=(n, lk // block_kv),
    in_specs=[
      pl.BlockSpec((None, lq, f), lambda b, j: (b, 0, 0)),
      kv_spec,
      v_spec,
      pl.BlockSpec((None, lq, dv), lambda b, j: (b, 0, 0)),
    ],
    out_specs=[kv_spec, v_spec],
    out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
    compiler_params=params,
    interpret=interpret,
    name="xnor_attention_dkv",
  )(q, k, v, do)
  return dq, dk, dvv
