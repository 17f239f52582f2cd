"""Flash attention for GPU (Pallas Triton): forward, dQ and dK/dV kernels.

Each program owns one query block (forward, dQ) or one key block of a key head (dK/dV) and loops
over the other sequence inside the kernel, over the visited block range only (causal and segment
skipping, `attention_blocks.block_pairs`). Layout stays [B, L, H, D]; the head dimension is
zero-padded to a power of two (Triton tiles), which changes neither scores nor outputs.
Grouped-query attention: the dK/dV program loops over the group's query heads, so dK/dV are
accumulated per key head in registers.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxlab.kernels.attention_blocks import (
  MASK_VALUE,
  block_pairs,
  finish_softmax,
  masked_scores,
  needed_range,
  online_softmax_step,
  probs_and_dscores,
  tile_mask,
)
from jaxlab.kernels.tiling import fit_block, pad_axis, round_up

_ALIGN = 16


@dataclasses.dataclass(frozen=True)
class GpuBlocks:
  """Tile sizes (powers of two; shrunk for short sequences) and Triton launch parameters."""

  block_q: int = 64
  block_kv: int = 64
  block_q_bwd: int = 32
  block_kv_bwd: int = 64
  num_warps: int = 4
  num_stages: int = 2


def _compiler_params(blocks: GpuBlocks) -> plgpu.CompilerParams:
  return plgpu.CompilerParams(num_warps=blocks.num_warps, num_stages=blocks.num_stages)


def _fit(block: int, length: int) -> int:
  return fit_block(block, pl.next_power_of_2(length), _ALIGN)


def _pad_seq_dim(x: jax.Array, length: int, dim: int) -> jax.Array:
  return pad_axis(pad_axis(x, 1, length), x.ndim - 1, dim)


def _fwd_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  qpos_ref,
  qseg_ref,
  kvpos_ref,
  kvseg_ref,
  o_ref,
  lse_ref,
  *,
  scale,
  block_kv,
):
  q = q_ref[...]
  q_pos, q_seg = qpos_ref[...][:, None], qseg_ref[...][:, None]

  def body(j, carry):
    kv = pl.ds(j * block_kv, block_kv)
    mask = tile_mask(q_pos, q_seg, kvpos_ref[kv][None, :], kvseg_ref[kv][None, :])
    s = masked_scores(q, k_ref[kv, :], mask, scale)
    return online_softmax_step(s, mask, v_ref[kv, :], *carry)

  rows = q.shape[0]
  init = (
    jnp.full((rows, 1), MASK_VALUE, jnp.float32),
    jnp.zeros((rows, 1), jnp.float32),
    jnp.zeros((rows, o_ref.shape[-1]), jnp.float32),
  )
  out, lse = finish_softmax(*jax.lax.fori_loop(lo_ref[...], hi_ref[...], body, init))
  o_ref[...] = out.astype(o_ref.dtype)
  lse_ref[...] = lse[:, 0]


def forward(
  q, k, v, q_pos, q_seg, kv_pos, kv_seg, *, blocks: GpuBlocks = GpuBlocks(), interpret: bool = False
) -> tuple[jax.Array, jax.Array]:
  """q [B, T, H, D], k/v [B, S, K, D] -> (out [B, T, H, D], lse [B, H, T] float32)."""
  batch, q_len, heads, dim = q.shape
  kv_len, kv_heads = k.shape[1], k.shape[2]
  groups = heads // kv_heads
  bq, bk = _fit(blocks.block_q, q_len), _fit(blocks.block_kv, kv_len)
  q_pad, kv_pad, dim_pad = round_up(q_len, bq), round_up(kv_len, bk), pl.next_power_of_2(dim)
  q_pos, q_seg = pad_axis(q_pos, 1, q_pad), pad_axis(q_seg, 1, q_pad)
  kv_pos, kv_seg = pad_axis(kv_pos, 1, kv_pad), pad_axis(kv_seg, 1, kv_pad)
  lo, hi = needed_range(block_pairs(q_pos, q_seg, kv_pos, kv_seg, bq, bk))
  q_spec = pl.BlockSpec((None, bq, None, dim_pad), lambda b, h, i: (b, i, h, 0))
  kv_spec = pl.BlockSpec((None, kv_pad, None, dim_pad), lambda b, h, i: (b, 0, h // groups, 0))
  range_spec = pl.BlockSpec((None, None), lambda b, h, i: (b, i))
  q_ids_spec = pl.BlockSpec((None, bq), lambda b, h, i: (b, i))
  kv_ids_spec = pl.BlockSpec((None, kv_pad), lambda b, h, i: (b, 0))
  out, lse = pl.pallas_call(
    functools.partial(_fwd_kernel, scale=dim**-0.5, block_kv=bk),
    grid=(batch, heads, q_pad // bq),
    in_specs=[
      range_spec,
      range_spec,
      q_spec,
      kv_spec,
      kv_spec,
      q_ids_spec,
      q_ids_spec,
      kv_ids_spec,
      kv_ids_spec,
    ],
    out_specs=[q_spec, pl.BlockSpec((None, None, bq), lambda b, h, i: (b, h, i))],
    out_shape=[
      jax.ShapeDtypeStruct((batch, q_pad, heads, dim_pad), q.dtype),
      jax.ShapeDtypeStruct((batch, heads, q_pad), jnp.float32),
    ],
    compiler_params=_compiler_params(blocks),
    interpret=interpret,
    name="flash_attention_fwd",
  )(
    lo,
    hi,
    _pad_seq_dim(q, q_pad, dim_pad),
    _pad_seq_dim(k, kv_pad, dim_pad),
    _pad_seq_dim(v, kv_pad, dim_pad),
    q_pos,
    q_seg,
    kv_pos,
    kv_seg,
  )
  return out[:, :q_len, :, :dim], lse[:, :, :q_len]


def _dq_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qpos_ref,
  qseg_ref,
  kvpos_ref,
  kvseg_ref,
  dq_ref,
  *,
  scale,
  block_kv,
):
  q, do = q_ref[...], do_ref[...]
  lse, delta = lse_ref[...][:, None], delta_ref[...][:, None]
  q_pos, q_seg = qpos_ref[...][:, None], qseg_ref[...][:, None]

  def body(j, dq):
    kv = pl.ds(j * block_kv, block_kv)
    mask = tile_mask(q_pos, q_seg, kvpos_ref[kv][None, :], kvseg_ref[kv][None, :])
    k = k_ref[kv, :]
    s = masked_scores(q, k, mask, scale)
    _, ds = probs_and_dscores(s, mask, lse, do, v_ref[kv, :], delta, scale)
    return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

  dq = jax.lax.fori_loop(lo_ref[...], hi_ref[...], body, jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = dq.astype(dq_ref.dtype)


def _dkv_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qpos_ref,
  qseg_ref,
  kvpos_ref,
  kvseg_ref,
  dk_ref,
  dv_ref,
  *,
  scale,
  block_q,
  groups,
):
  k, v = k_ref[...], v_ref[...]
  kv_pos, kv_seg = kvpos_ref[...][None, :], kvseg_ref[...][None, :]

  def body(g, i, carry):
    dk, dv = carry
    rows = pl.ds(i * block_q, block_q)
    q, do = q_ref[rows, g, :], do_ref[rows, g, :]
    mask = tile_mask(qpos_ref[rows][:, None], qseg_ref[rows][:, None], kv_pos, kv_seg)
    s = masked_scores(q, k, mask, scale)
    p, ds = probs_and_dscores(
      s, mask, lse_ref[g, rows][:, None], do, v, delta_ref[g, rows][:, None], scale
    )
    dv = dv + jnp.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dk = dk + jnp.dot(ds.T.astype(q.dtype), q, preferred_element_type=jnp.float32)
    return dk, dv

  def head(g, carry):
    return jax.lax.fori_loop(lo_ref[...], hi_ref[...], functools.partial(body, g), carry)

  zeros = jnp.zeros(k.shape, jnp.float32)
  dk, dv = jax.lax.fori_loop(0, groups, head, (zeros, zeros))
  dk_ref[...] = dk.astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def backward(
  q,
  k,
  v,
  q_pos,
  q_seg,
  kv_pos,
  kv_seg,
  out,
  lse,
  do,
  *,
  blocks: GpuBlocks = GpuBlocks(),
  interpret: bool = False,
):
  """Gradients (dq, dk, dv) of attention from the forward's output and lse [B, H, T]."""
  batch, q_len, heads, dim = q.shape
  kv_len, kv_heads = k.shape[1], k.shape[2]
  groups = heads // kv_heads
  bq, bk = _fit(blocks.block_q_bwd, q_len), _fit(blocks.block_kv_bwd, kv_len)
  q_pad, kv_pad, dim_pad = round_up(q_len, bq), round_up(kv_len, bk), pl.next_power_of_2(dim)
  nq, nk = q_pad // bq, kv_pad // bk
  scale = dim**-0.5
  delta = jnp.sum(out.astype(jnp.float32) * do.astype(jnp.float32), axis=-1).transpose(0, 2, 1)
  lse, delta = pad_axis(lse, 2, q_pad), pad_axis(delta, 2, q_pad)
  q_pos, q_seg = pad_axis(q_pos, 1, q_pad), pad_axis(q_seg, 1, q_pad)
  kv_pos, kv_seg = pad_axis(kv_pos, 1, kv_pad), pad_axis(kv_seg, 1, kv_pad)
  qp, dop = _pad_seq_dim(q, q_pad, dim_pad), _pad_seq_dim(do, q_pad, dim_pad)
  kp, vp = _pad_seq_dim(k, kv_pad, dim_pad), _pad_seq_dim(v, kv_pad, dim_pad)
  pairs = block_pairs(q_pos, q_seg, kv_pos, kv_seg, bq, bk)
  params = _compiler_params(blocks)

  lo, hi = needed_range(pairs)
  q_spec = pl.BlockSpec((None, bq, None, dim_pad), lambda b, h, i: (b, i, h, 0))
  kv_spec = pl.BlockSpec((None, kv_pad, None, dim_pad), lambda b, h, i: (b, 0, h // groups, 0))
  stat_spec = pl.BlockSpec((None, None, bq), lambda b, h, i: (b, h, i))
  range_spec = pl.BlockSpec((None, None), lambda b, h, i: (b, i))
  q_ids_spec = pl.BlockSpec((None, bq), lambda b, h, i: (b, i))
  kv_ids_spec = pl.BlockSpec((None, kv_pad), lambda b, h, i: (b, 0))
  dq = pl.pallas_call(
    functools.partial(_dq_kernel, scale=scale, block_kv=bk),
    grid=(batch, heads, nq),
    in_specs=[
      range_spec,
      range_spec,
      q_spec,
      kv_spec,
      kv_spec,
      q_spec,
      stat_spec,
      stat_spec,
      q_ids_spec,
      q_ids_spec,
      kv_ids_spec,
      kv_ids_spec,
    ],
    out_specs=q_spec,
    out_shape=jax.ShapeDtypeStruct(qp.shape, q.dtype),
    compiler_params=params,
    interpret=interpret,
    name="flash_attention_dq",
  )(lo, hi, qp, kp, vp, dop, lse, delta, q_pos, q_seg, kv_pos, kv_seg)

  lo, hi = needed_range(pairs.transpose(0, 2, 1))
  grouped = (batch, q_pad, kv_heads, groups, dim_pad)
  q_spec = pl.BlockSpec((None, q_pad, None, groups, dim_pad), lambda b, kh, j: (b, 0, kh, 0, 0))
  kv_spec = pl.BlockSpec((None, bk, None, dim_pad), lambda b, kh, j: (b, j, kh, 0))
  stat_spec = pl.BlockSpec((None, None, groups, q_pad), lambda b, kh, j: (b, kh, 0, 0))
  range_spec = pl.BlockSpec((None, None), lambda b, kh, j: (b, j))
  q_ids_spec = pl.BlockSpec((None, q_pad), lambda b, kh, j: (b, 0))
  kv_ids_spec = pl.BlockSpec((None, bk), lambda b, kh, j: (b, j))
  stat_shape = (batch, kv_heads, groups, q_pad)
  dk, dv = pl.pallas_call(
    functools.partial(_dkv_kernel, scale=scale, block_q=bq, groups=groups),
    grid=(batch, kv_heads, nk),
    in_specs=[
      range_spec,
      range_spec,
      q_spec,
      kv_spec,
      kv_spec,
      q_spec,
      stat_spec,
      stat_spec,
      q_ids_spec,
      q_ids_spec,
      kv_ids_spec,
      kv_ids_spec,
    ],
    out_specs=[kv_spec, kv_spec],
    out_shape=[jax.ShapeDtypeStruct(kp.shape, k.dtype), jax.ShapeDtypeStruct(vp.shape, v.dtype)],
    compiler_params=params,
    interpret=interpret,
    name="flash_attention_dkv",
  )(
    lo,
    hi,
    qp.reshape(grouped),
    kp,
    vp,
    dop.reshape(grouped),
    lse.reshape(stat_shape),
    delta.reshape(stat_shape),
    q_pos,
    q_seg,
    kv_pos,
    kv_seg,
  )
  return dq[:, :q_len, :, :dim], dk[:, :kv_len, :, :dim], dv[:, :kv_len, :, :dim]
