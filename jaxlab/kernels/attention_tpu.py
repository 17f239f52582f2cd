"""Flash attention for TPU (Pallas Mosaic): forward, dQ and dK/dV kernels.

Layout inside the kernels is head-major [B, H, L, D]. The key-block grid axis is the innermost
("arbitrary") axis and accumulates in VMEM scratch. Block pairs that cannot see each other (by the
causal index or segment ranges, `attention_blocks.block_pairs`) are skipped, and their index maps
are clamped to a visited block so that the pipeline issues no DMA for them. Positions and segment
ids travel as one int32 [B, 8, L] array (rows: position, segment, zeros), lane-dense; the query
side is transposed in the kernel. Per-row statistics (lse, delta) are [B, H, 1, L] float32.
Grouped-query attention: the dK/dV kernel runs per key head and reduces over the group's query
heads and query blocks along its last grid axis, so dK/dV are never materialized per query head.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

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
from jaxlab.kernels.tiling import col_to_row, fit_block, pad_axis, round_up, row_to_col

LANES = 128
_ID_ROWS = 8
_SEMANTICS = pltpu.CompilerParams(
  dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")
)


@dataclasses.dataclass(frozen=True)
class TpuBlocks:
  """Tile sizes (multiples of 128; shrunk for short sequences)."""

  block_q: int = 512
  block_kv: int = 512
  block_q_bwd: int = 256
  block_kv_bwd: int = 512


def _ids(pos: jax.Array, seg: jax.Array, length: int) -> jax.Array:
  """[B, 8, length] int32: row 0 positions, row 1 segment ids (0 = padding), rest zero."""
  rows = jnp.stack([pos.astype(jnp.int32), seg.astype(jnp.int32)], axis=1)
  rows = pad_axis(pad_axis(rows, 2, length), 1, _ID_ROWS)
  return rows


def _mask(q_ids: jax.Array, kv_ids: jax.Array) -> jax.Array:
  q_cols = q_ids.T  # [bq, 8]
  return tile_mask(q_cols[:, 0:1], q_cols[:, 1:2], kv_ids[0:1], kv_ids[1:2])


def _clamp(i, lo, hi):
  """i clamped into the visited range [lo, hi) (to block 0 when the range is empty)."""
  return jnp.minimum(jnp.maximum(i, lo), jnp.maximum(hi - 1, 0))


def _head_major(x: jax.Array, length: int) -> jax.Array:
  return pad_axis(x.transpose(0, 2, 1, 3), 2, length)


def _stat(x: jax.Array, length: int) -> jax.Array:
  """[B, H, L] -> [B, H, 1, length] float32."""
  return pad_axis(x.astype(jnp.float32), 2, length)[:, :, None, :]


def _fwd_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  qid_ref,
  kvid_ref,
  o_ref,
  lse_ref,
  m_sc,
  l_sc,
  acc_sc,
  *,
  scale,
  nq,
):
  b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  visit = b * nq + i

  @pl.when(j == 0)
  def _init():
    m_sc[...] = jnp.full_like(m_sc, MASK_VALUE)
    l_sc[...] = jnp.zeros_like(l_sc)
    acc_sc[...] = jnp.zeros_like(acc_sc)

  @pl.when((j >= lo_ref[visit]) & (j < hi_ref[visit]))
  def _step():
    mask = _mask(qid_ref[...], kvid_ref[...])
    s = masked_scores(q_ref[...], k_ref[...], mask, scale)
    m, l, acc = online_softmax_step(
      s, mask, v_ref[...], m_sc[...][:, 0:1], l_sc[...][:, 0:1], acc_sc[...]
    )
    m_sc[...] = jnp.broadcast_to(m, m_sc.shape)
    l_sc[...] = jnp.broadcast_to(l, l_sc.shape)
    acc_sc[...] = acc

  @pl.when(j == pl.num_programs(3) - 1)
  def _finish():
    out, lse = finish_softmax(m_sc[...][:, 0:1], l_sc[...][:, 0:1], acc_sc[...])
    o_ref[...] = out.astype(o_ref.dtype)
    lse_ref[...] = col_to_row(lse)


def forward(
  q, k, v, q_pos, q_seg, kv_pos, kv_seg, *, blocks: TpuBlocks = TpuBlocks(), interpret: bool = False
) -> tuple[jax.Array, jax.Array]:
  """q [B, T, H, D], k/v [B, S, K, D] -> (out [B, T, H, D], lse [B, H, T] float32)."""
  batch, q_len, heads, dim = q.shape
  kv_len, kv_heads = k.shape[1], k.shape[2]
  groups = heads // kv_heads
  bq, bk = fit_block(blocks.block_q, q_len, LANES), fit_block(blocks.block_kv, kv_len, LANES)
  q_pad, kv_pad = round_up(q_len, bq), round_up(kv_len, bk)
  nq, nk = q_pad // bq, kv_pad // bk
  q_ids, kv_ids = _ids(q_pos, q_seg, q_pad), _ids(kv_pos, kv_seg, kv_pad)
  lo, hi = needed_range(block_pairs(q_ids[:, 0], q_ids[:, 1], kv_ids[:, 0], kv_ids[:, 1], bq, bk))

  def kv_map(b, h, i, j, lo, hi):
    return (b, h // groups, _clamp(j, lo[b * nq + i], hi[b * nq + i]), 0)

  def kv_id_map(b, h, i, j, lo, hi):
    return (b, 0, _clamp(j, lo[b * nq + i], hi[b * nq + i]))

  q_spec = pl.BlockSpec((None, None, bq, dim), lambda b, h, i, j, *_: (b, h, i, 0))
  kv_spec = pl.BlockSpec((None, None, bk, dim), kv_map)
  grid_spec = pltpu.PrefetchScalarGridSpec(
    num_scalar_prefetch=2,
    grid=(batch, heads, nq, nk),
    in_specs=[
      q_spec,
      kv_spec,
      kv_spec,
      pl.BlockSpec((None, _ID_ROWS, bq), lambda b, h, i, j, *_: (b, 0, i)),
      pl.BlockSpec((None, _ID_ROWS, bk), kv_id_map),
    ],
    out_specs=[q_spec, pl.BlockSpec((None, None, 1, bq), lambda b, h, i, j, *_: (b, h, 0, i))],
    scratch_shapes=[
      pltpu.VMEM((bq, LANES), jnp.float32),
      pltpu.VMEM((bq, LANES), jnp.float32),
      pltpu.VMEM((bq, dim), jnp.float32),
    ],
  )
  out, lse = pl.pallas_call(
    functools.partial(_fwd_kernel, scale=dim**-0.5, nq=nq),
    grid_spec=grid_spec,
    out_shape=[
      jax.ShapeDtypeStruct((batch, heads, q_pad, dim), q.dtype),
      jax.ShapeDtypeStruct((batch, heads, 1, q_pad), jnp.float32),
    ],
    compiler_params=_SEMANTICS,
    interpret=interpret,
    name="flash_attention_fwd",
  )(
    lo.ravel(),
    hi.ravel(),
    _head_major(q, q_pad),
    _head_major(k, kv_pad),
    _head_major(v, kv_pad),
    q_ids,
    kv_ids,
  )
  return out[:, :, :q_len].transpose(0, 2, 1, 3), lse[:, :, 0, :q_len]


def _dq_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qid_ref,
  kvid_ref,
  dq_ref,
  dq_sc,
  *,
  scale,
  nq,
):
  b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  visit = b * nq + i

  @pl.when(j == 0)
  def _init():
    dq_sc[...] = jnp.zeros_like(dq_sc)

  @pl.when((j >= lo_ref[visit]) & (j < hi_ref[visit]))
  def _step():
    mask = _mask(qid_ref[...], kvid_ref[...])
    k = k_ref[...]
    s = masked_scores(q_ref[...], k, mask, scale)
    _, ds = probs_and_dscores(
      s, mask, row_to_col(lse_ref[...]), do_ref[...], v_ref[...], row_to_col(delta_ref[...]), scale
    )
    dq_sc[...] += jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

  @pl.when(j == pl.num_programs(3) - 1)
  def _finish():
    dq_ref[...] = dq_sc[...].astype(dq_ref.dtype)


def _dkv_kernel(
  lo_ref,
  hi_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qid_ref,
  kvid_ref,
  dk_ref,
  dv_ref,
  dk_sc,
  dv_sc,
  *,
  scale,
  nq,
  nk,
):
  b, j, r = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  i, visit = r % nq, b * nk + j

  @pl.when(r == 0)
  def _init():
    dk_sc[...] = jnp.zeros_like(dk_sc)
    dv_sc[...] = jnp.zeros_like(dv_sc)

  @pl.when((i >= lo_ref[visit]) & (i < hi_ref[visit]))
  def _step():
    mask = _mask(qid_ref[...], kvid_ref[...])
    q, do = q_ref[...], do_ref[...]
    s = masked_scores(q, k_ref[...], mask, scale)
    p, ds = probs_and_dscores(
      s, mask, row_to_col(lse_ref[...]), do, v_ref[...], row_to_col(delta_ref[...]), scale
    )
    dv_sc[...] += jnp.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dk_sc[...] += jnp.dot(ds.T.astype(q.dtype), q, preferred_element_type=jnp.float32)

  @pl.when(r == pl.num_programs(3) - 1)
  def _finish():
    dk_ref[...] = dk_sc[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)


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
  blocks: TpuBlocks = TpuBlocks(),
  interpret: bool = False,
):
  """Gradients (dq, dk, dv) of attention from the forward's output and lse [B, H, T]."""
  batch, q_len, heads, dim = q.shape
  kv_len, kv_heads = k.shape[1], k.shape[2]
  groups = heads // kv_heads
  bq = fit_block(blocks.block_q_bwd, q_len, LANES)
  bk = fit_block(blocks.block_kv_bwd, kv_len, LANES)
  q_pad, kv_pad = round_up(q_len, bq), round_up(kv_len, bk)
  nq, nk = q_pad // bq, kv_pad // bk
  scale = dim**-0.5
  q_ids, kv_ids = _ids(q_pos, q_seg, q_pad), _ids(kv_pos, kv_seg, kv_pad)
  pairs = block_pairs(q_ids[:, 0], q_ids[:, 1], kv_ids[:, 0], kv_ids[:, 1], bq, bk)
  delta = jnp.sum(out.astype(jnp.float32) * do.astype(jnp.float32), axis=-1).transpose(0, 2, 1)
  qh, doh = _head_major(q, q_pad), _head_major(do, q_pad)
  kh, vh = _head_major(k, kv_pad), _head_major(v, kv_pad)
  lse_p, delta_p = _stat(lse, q_pad), _stat(delta, q_pad)

  # dQ: query blocks outer, key blocks reduced.
  lo, hi = needed_range(pairs)

  def kv_map(b, h, i, j, lo, hi):
    return (b, h // groups, _clamp(j, lo[b * nq + i], hi[b * nq + i]), 0)

  def kv_id_map(b, h, i, j, lo, hi):
    return (b, 0, _clamp(j, lo[b * nq + i], hi[b * nq + i]))

  q_spec = pl.BlockSpec((None, None, bq, dim), lambda b, h, i, j, *_: (b, h, i, 0))
  stat_spec = pl.BlockSpec((None, None, 1, bq), lambda b, h, i, j, *_: (b, h, 0, i))
  kv_spec = pl.BlockSpec((None, None, bk, dim), kv_map)
  dq = pl.pallas_call(
    functools.partial(_dq_kernel, scale=scale, nq=nq),
    grid_spec=pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=2,
      grid=(batch, heads, nq, nk),
      in_specs=[
        q_spec,
        kv_spec,
        kv_spec,
        q_spec,
        stat_spec,
        stat_spec,
        pl.BlockSpec((None, _ID_ROWS, bq), lambda b, h, i, j, *_: (b, 0, i)),
        pl.BlockSpec((None, _ID_ROWS, bk), kv_id_map),
      ],
      out_specs=q_spec,
      scratch_shapes=[pltpu.VMEM((bq, dim), jnp.float32)],
    ),
    out_shape=jax.ShapeDtypeStruct(qh.shape, q.dtype),
    compiler_params=_SEMANTICS,
    interpret=interpret,
    name="flash_attention_dq",
  )(lo.ravel(), hi.ravel(), qh, kh, vh, doh, lse_p, delta_p, q_ids, kv_ids)

  # dK, dV: key blocks outer, (query head of the group, query block) reduced.
  lo, hi = needed_range(pairs.transpose(0, 2, 1))

  def q_block(b, j, r, lo, hi):
    return _clamp(r % nq, lo[b * nk + j], hi[b * nk + j])

  def q_map(b, kh, j, r, lo, hi):
    return (b, kh * groups + r // nq, q_block(b, j, r, lo, hi), 0)

  def stat_map(b, kh, j, r, lo, hi):
    return (b, kh * groups + r // nq, 0, q_block(b, j, r, lo, hi))

  q_spec = pl.BlockSpec((None, None, bq, dim), q_map)
  stat_spec = pl.BlockSpec((None, None, 1, bq), stat_map)
  kv_spec = pl.BlockSpec((None, None, bk, dim), lambda b, kh, j, r, *_: (b, kh, j, 0))
  dk, dv = pl.pallas_call(
    functools.partial(_dkv_kernel, scale=scale, nq=nq, nk=nk),
    grid_spec=pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=2,
      grid=(batch, kv_heads, nk, groups * nq),
      in_specs=[
        q_spec,
        kv_spec,
        kv_spec,
        q_spec,
        stat_spec,
        stat_spec,
        pl.BlockSpec(
          (None, _ID_ROWS, bq), lambda b, kh, j, r, lo, hi: (b, 0, q_block(b, j, r, lo, hi))
        ),
        pl.BlockSpec((None, _ID_ROWS, bk), lambda b, kh, j, r, *_: (b, 0, j)),
      ],
      out_specs=[kv_spec, kv_spec],
      scratch_shapes=[pltpu.VMEM((bk, dim), jnp.float32), pltpu.VMEM((bk, dim), jnp.float32)],
    ),
    out_shape=[jax.ShapeDtypeStruct(kh.shape, k.dtype), jax.ShapeDtypeStruct(vh.shape, v.dtype)],
    compiler_params=_SEMANTICS,
    interpret=interpret,
    name="flash_attention_dkv",
  )(lo.ravel(), hi.ravel(), qh, kh, vh, doh, lse_p, delta_p, q_ids, kv_ids)

  def back(x, length):
    return x[:, :, :length].transpose(0, 2, 1, 3)

  return back(dq, q_len), back(dk, kv_len), back(dv, kv_len)
