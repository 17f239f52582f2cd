"""Fused final projection + cross-entropy for TPU (Pallas Mosaic): forward, dHidden and dHead.

Logits exist only as one [block_tokens, chunk] tile in VMEM. The forward streams vocabulary
chunks through an online logsumexp and picks the target logit; both backward kernels recompute
the tile's logits from the saved lse, form dlogits = coef * (softmax - onehot), and reduce it
against the head (dHidden, vocabulary innermost) or the hidden states (dHead, tokens innermost).
Per-token vectors travel lane-dense as [1, N]. A whole hidden row [block_tokens, D] and head
chunk [D, chunk] sit in VMEM, which bounds D by the scoped VMEM (about D <= 4096 with the
default tiles); the vocabulary is zero-padded to a chunk multiple (pick a chunk dividing V to
avoid that copy).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxlab.kernels.tiling import col_to_row, fit_block, pad_axis, round_up, row_to_col

LANES = 128
_MASK = -0.7 * float(jnp.finfo(jnp.float32).max)
_NT_DIMS = (((1,), (1,)), ((), ()))


def _logits(h_ref, w_ref, chunk, vocab):
  """f32 logits of one tile, padded vocabulary columns masked, and their column ids [1, bv]."""
  bv = w_ref.shape[1]
  z = jnp.dot(h_ref[...], w_ref[...], preferred_element_type=jnp.float32)
  cols = chunk * bv + jax.lax.broadcasted_iota(jnp.int32, (1, bv), 1)
  return jnp.where(cols < vocab, z, _MASK), cols


def _dlogits(h_ref, w_ref, t_ref, lse_ref, coef_ref, chunk, vocab):
  z, cols = _logits(h_ref, w_ref, chunk, vocab)
  p = jnp.exp(z - row_to_col(lse_ref[...]))
  onehot = (cols == row_to_col(t_ref[...])).astype(jnp.float32)
  return row_to_col(coef_ref[...]) * (p - onehot)


def _fwd_kernel(h_ref, w_ref, t_ref, lse_ref, tgt_ref, m_sc, l_sc, t_sc, *, vocab):
  c = pl.program_id(1)

  @pl.when(c == 0)
  def _init():
    m_sc[...] = jnp.full_like(m_sc, _MASK)
    l_sc[...] = jnp.zeros_like(l_sc)
    t_sc[...] = jnp.zeros_like(t_sc)

  z, cols = _logits(h_ref, w_ref, c, vocab)
  m_prev, l_prev = m_sc[...][:, 0:1], l_sc[...][:, 0:1]
  m = jnp.maximum(m_prev, z.max(axis=-1, keepdims=True))
  l = jnp.exp(m_prev - m) * l_prev + jnp.exp(z - m).sum(axis=-1, keepdims=True)
  hit = cols == row_to_col(t_ref[...])
  t_sc[...] += jnp.where(hit, z, 0.0).sum(axis=-1, keepdims=True)
  m_sc[...] = jnp.broadcast_to(m, m_sc.shape)
  l_sc[...] = jnp.broadcast_to(l, l_sc.shape)

  @pl.when(c == pl.num_programs(1) - 1)
  def _finish():
    lse_ref[...] = col_to_row(m_sc[...][:, 0:1] + jnp.log(l_sc[...][:, 0:1]))
    tgt_ref[...] = col_to_row(t_sc[...][:, 0:1])


def _dh_kernel(h_ref, w_ref, t_ref, lse_ref, coef_ref, dh_ref, acc, *, vocab):
  c = pl.program_id(1)

  @pl.when(c == 0)
  def _init():
    acc[...] = jnp.zeros_like(acc)

  g = _dlogits(h_ref, w_ref, t_ref, lse_ref, coef_ref, c, vocab)
  w = w_ref[...]
  acc[...] += jax.lax.dot_general(
    g.astype(w.dtype), w, _NT_DIMS, preferred_element_type=jnp.float32
  )

  @pl.when(c == pl.num_programs(1) - 1)
  def _finish():
    dh_ref[...] = acc[...].astype(dh_ref.dtype)


def _dw_kernel(h_ref, w_ref, t_ref, lse_ref, coef_ref, dw_ref, acc, *, vocab):
  c, i = pl.program_id(0), pl.program_id(1)

  @pl.when(i == 0)
  def _init():
    acc[...] = jnp.zeros_like(acc)

  g = _dlogits(h_ref, w_ref, t_ref, lse_ref, coef_ref, c, vocab)
  h = h_ref[...]
  acc[...] += jnp.dot(h.T, g.astype(h.dtype), preferred_element_type=jnp.float32)

  @pl.when(i == pl.num_programs(1) - 1)
  def _finish():
    dw_ref[...] = acc[...].astype(dw_ref.dtype)


def _tiles(hidden, head, block_tokens, chunk_size):
  (tokens, dim), vocab = hidden.shape, head.shape[1]
  bn, bv = fit_block(block_tokens, tokens, LANES), fit_block(chunk_size, vocab, LANES)
  return bn, bv, round_up(tokens, bn), round_up(vocab, bv), dim


def _row_vector(x: jax.Array, length: int) -> jax.Array:
  return pad_axis(x, 0, length)[None, :]


def forward(
  hidden, head, targets, *, chunk_size: int = 512, block_tokens: int = 256, interpret: bool = False
) -> tuple[jax.Array, jax.Array]:
  """hidden [N, D], head [D, V], targets [N] -> (logsumexp [N], target logit [N]), float32."""
  tokens, vocab = hidden.shape[0], head.shape[1]
  bn, bv, n_pad, v_pad, dim = _tiles(hidden, head, block_tokens, chunk_size)
  row_spec = pl.BlockSpec((1, bn), lambda i, c: (0, i))
  lse, tgt = pl.pallas_call(
    functools.partial(_fwd_kernel, vocab=vocab),
    grid=(n_pad // bn, v_pad // bv),
    in_specs=[
      pl.BlockSpec((bn, dim), lambda i, c: (i, 0)),
      pl.BlockSpec((dim, bv), lambda i, c: (0, c)),
      row_spec,
    ],
    out_specs=[row_spec, row_spec],
    out_shape=[jax.ShapeDtypeStruct((1, n_pad), jnp.float32)] * 2,
    scratch_shapes=[pltpu.VMEM((bn, LANES), jnp.float32)] * 3,
    compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
    interpret=interpret,
    name="linear_ce_fwd",
  )(
    pad_axis(hidden, 0, n_pad),
    pad_axis(head, 1, v_pad),
    _row_vector(targets.astype(jnp.int32), n_pad),
  )
  return lse[0, :tokens], tgt[0, :tokens]


def backward(
  hidden,
  head,
  targets,
  lse,
  coef,
  *,
  chunk_size: int = 512,
  block_tokens: int = 256,
  interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """(dhidden, dhead) for dlogits = coef[:, None] * (softmax(logits) - onehot(targets))."""
  tokens, vocab = hidden.shape[0], head.shape[1]
  bn, bv, n_pad, v_pad, dim = _tiles(hidden, head, block_tokens, chunk_size)
  args = (
    pad_axis(hidden, 0, n_pad),
    pad_axis(head, 1, v_pad),
    _row_vector(targets.astype(jnp.int32), n_pad),
    _row_vector(lse, n_pad),
    _row_vector(coef.astype(jnp.float32), n_pad),
  )
  row_spec = pl.BlockSpec((1, bn), lambda i, c: (0, i))
  dh = pl.pallas_call(
    functools.partial(_dh_kernel, vocab=vocab),
    grid=(n_pad // bn, v_pad // bv),
    in_specs=[
      pl.BlockSpec((bn, dim), lambda i, c: (i, 0)),
      pl.BlockSpec((dim, bv), lambda i, c: (0, c)),
      row_spec,
      row_spec,
      row_spec,
    ],
    out_specs=pl.BlockSpec((bn, dim), lambda i, c: (i, 0)),
    out_shape=jax.ShapeDtypeStruct((n_pad, dim), hidden.dtype),
    scratch_shapes=[pltpu.VMEM((bn, dim), jnp.float32)],
    compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
    interpret=interpret,
    name="linear_ce_dhidden",
  )(*args)
  row_spec = pl.BlockSpec((1, bn), lambda c, i: (0, i))
  dw = pl.pallas_call(
    functools.partial(_dw_kernel, vocab=vocab),
    grid=(v_pad // bv, n_pad // bn),
    in_specs=[
      pl.BlockSpec((bn, dim), lambda c, i: (i, 0)),
      pl.BlockSpec((dim, bv), lambda c, i: (0, c)),
      row_spec,
      row_spec,
      row_spec,
    ],
    out_specs=pl.BlockSpec((dim, bv), lambda c, i: (0, c)),
    out_shape=jax.ShapeDtypeStruct((dim, v_pad), head.dtype),
    scratch_shapes=[pltpu.VMEM((dim, bv), jnp.float32)],
    compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
    interpret=interpret,
    name="linear_ce_dhead",
  )(*args)
  return dh[:tokens], dw[:, :vocab]
