"""Fused final projection + weighted cross-entropy without materializing [tokens, vocab] logits.

`fused_linear_cross_entropy(hidden, head, targets, weights)` returns the weighted loss sum, the
weight sum and every token's log-probability of its target (for sequence-level objectives such
as DPO and SCIR), with gradients for hidden, head and weights (the
log-probabilities are differentiable too). Implementations:
  TPU: Mosaic kernels (`linear_ce_tpu`): logits live only as VMEM tiles.
  GPU and CPU: `chunked_*`, a vocabulary-chunked XLA loop whose matmuls go to cuBLAS / Eigen;
    peak extra memory is one [tokens, chunk] block. A Triton version would have to recompute
    logits per hidden-dim tile or spill dlogits to HBM, and would not beat the library matmuls.
  reference: plain jnp with full logits (tests and target="reference").
Targets must lie in [0, V); give padding tokens weight 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxlab.kernels import linear_ce_tpu
from jaxlab.kernels.dispatch import dispatch

_MASK = -0.7 * float(jnp.finfo(jnp.float32).max)


def reference_forward(hidden, head, targets) -> tuple[jax.Array, jax.Array]:
  """(logsumexp [N], target logit [N]) from full float32 logits."""
  logits = jnp.dot(hidden, head, preferred_element_type=jnp.float32)
  target_logit = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(logits, axis=-1), target_logit


def reference_backward(hidden, head, targets, lse, coef) -> tuple[jax.Array, jax.Array]:
  """(dhidden, dhead) for dlogits = coef * (softmax - onehot), from full logits."""
  logits = jnp.dot(hidden, head, preferred_element_type=jnp.float32)
  onehot = jax.nn.one_hot(targets, head.shape[1], dtype=jnp.float32)
  g = coef[:, None] * (jnp.exp(logits - lse[:, None]) - onehot)
  dh = jnp.dot(g.astype(head.dtype), head.T, preferred_element_type=jnp.float32)
  dw = jnp.dot(hidden.T, g.astype(hidden.dtype), preferred_element_type=jnp.float32)
  return dh.astype(hidden.dtype), dw.astype(head.dtype)


def _chunk(head, targets, c, chunk):
  """Head columns of chunk c (the last chunk is shifted left to stay in bounds), its start, and
  masks of its fresh columns (not in an earlier chunk) and of the target columns."""
  vocab = head.shape[1]
  start = jnp.minimum(c * chunk, vocab - chunk)
  cols = start + jnp.arange(chunk)
  return (
    jax.lax.dynamic_slice_in_dim(head, start, chunk, axis=1),
    start,
    cols[None, :] >= c * chunk,
    cols[None, :] == targets[:, None],
  )


def chunked_forward(hidden, head, targets, *, chunk_size: int = 512):
  """(logsumexp [N], target logit [N]) with a loop over vocabulary chunks."""
  vocab, tokens = head.shape[1], hidden.shape[0]
  chunk = min(chunk_size, vocab)

  def body(c, carry):
    m, l, tgt = carry
    w, _, fresh, hit = _chunk(head, targets, c, chunk)
    z = jnp.where(fresh, jnp.dot(hidden, w, preferred_element_type=jnp.float32), _MASK)
    m_new = jnp.maximum(m, z.max(axis=-1))
    l = l * jnp.exp(m - m_new) + jnp.exp(z - m_new[:, None]).sum(axis=-1)
    return m_new, l, tgt + jnp.where(hit & fresh, z, 0.0).sum(axis=-1)

  init = (jnp.full((tokens,), _MASK), jnp.zeros((tokens,)), jnp.zeros((tokens,)))
  m, l, tgt = jax.lax.fori_loop(0, -(-vocab // chunk), body, init)
  return m + jnp.log(l), tgt


def chunked_backward(hidden, head, targets, lse, coef, *, chunk_size: int = 512):
  """(dhidden, dhead) with a loop over vocabulary chunks."""
  vocab = head.shape[1]
  chunk = min(chunk_size, vocab)

  def body(c, carry):
    dh, dw = carry
    w, start, fresh, hit = _chunk(head, targets, c, chunk)
    z = jnp.dot(hidden, w, preferred_element_type=jnp.float32)
    g = jnp.where(fresh, coef[:, None] * (jnp.exp(z - lse[:, None]) - hit), 0.0)
    dh = dh + jnp.dot(g.astype(w.dtype), w.T, preferred_element_type=jnp.float32)
    dw_chunk = jnp.dot(hidden.T, g.astype(hidden.dtype), preferred_element_type=jnp.float32)
    old = jax.lax.dynamic_slice_in_dim(dw, start, chunk, axis=1)
    return dh, jax.lax.dynamic_update_slice_in_dim(
      dw, (old + dw_chunk).astype(dw.dtype), start, axis=1
    )

  init = (jnp.zeros(hidden.shape, jnp.float32), jnp.zeros(head.shape, head.dtype))
  dh, dw = jax.lax.fori_loop(0, -(-vocab // chunk), body, init)
  return dh.astype(hidden.dtype), dw


@dataclasses.dataclass(frozen=True)
class _Impl:
  target: str | None
  chunk_size: int
  block_tokens: int

  def _pick(self, tpu, chunked, reference):
    sizes = dict(chunk_size=self.chunk_size)
    tpu = functools.partial(tpu, block_tokens=self.block_tokens, **sizes)
    chunked = functools.partial(chunked, **sizes)
    return dispatch(
      "linear_cross_entropy",
      self.target,
      tpu=tpu,
      gpu=lambda *a, interpret: chunked(*a),
      reference=reference,
      default=chunked,
    )

  def forward(self, *args):
    return self._pick(linear_ce_tpu.forward, chunked_forward, reference_forward)(*args)

  def backward(self, *args):
    return self._pick(linear_ce_tpu.backward, chunked_backward, reference_backward)(*args)


def _outputs(lse, target_logit, weights):
  logprobs = target_logit - lse
  return -jnp.sum(weights.astype(jnp.float32) * logprobs), jnp.sum(weights), logprobs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused(hidden, head, targets, weights, impl: _Impl):
  return _outputs(*impl.forward(hidden, head, targets), weights)


def _fused_fwd(hidden, head, targets, weights, impl):
  lse, target_logit = impl.forward(hidden, head, targets)
  out = _outputs(lse, target_logit, weights)
  return out, (hidden, head, targets, weights, lse, out[2])


def _fused_bwd(impl, residuals, cotangents):
  hidden, head, targets, weights, lse, logprobs = residuals
  g_loss, g_weight_sum, g_logprobs = cotangents
  coef = g_loss * weights.astype(jnp.float32) - g_logprobs
  dh, dw = impl.backward(hidden, head, targets, lse, coef)
  dweights = (g_weight_sum - g_loss * logprobs).astype(weights.dtype)
  return dh, dw, None, dweights


_fused.defvjp(_fused_fwd, _fused_bwd)


def fused_linear_cross_entropy(
  hidden: jax.Array,
  head: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  *,
  chunk_size: int = 512,
  block_tokens: int = 256,
  target: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sum_n w_n * -log p(t_n | h_n), sum_n w_n, log p(t_n | h_n) [N] float32) for
  logits = hidden [N, D] @ head [D, V], computed in vocabulary chunks of `chunk_size` columns
  (on TPU in tiles of `block_tokens` rows). `target` as in `jaxlab.kernels.dispatch`.
  """
  impl = _Impl(target, chunk_size, block_tokens)
  return _fused(hidden, head, targets.astype(jnp.int32), weights, impl)
