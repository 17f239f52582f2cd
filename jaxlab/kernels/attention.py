"""Flash attention: causal by index, grouped-query, packed segments; a Pallas kernel per platform.

`flash_attention` has the signature of `attention_reference.xla_attention` and the same
semantics (`jaxlab.models.attention` registers it as attention_impl="pallas"). Forward and
backward are tiled kernels with an online softmax; the forward saves only the output and the
per-row logsumexp for the backward. TPU runs our own Mosaic kernels (`attention_tpu`), GPU our
own Triton kernels (`attention_gpu`), other platforms the jnp reference below, chosen by
`dispatch`. Single-token decode falls back to `xla_attention` (one query row would be padded to a
whole query block).

Under a multi-device mesh (`jax.set_mesh` with flax logical axis rules, as the trainer sets up)
the kernels run per device through `jax.shard_map` over the model's activation sharding: batch
and heads split, which is exact for attention. The SPMD partitioner cannot split a Pallas call
itself and would replicate it on every device.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from jaxlab.kernels import attention_gpu, attention_tpu
from jaxlab.kernels.attention_reference import attention_mask, xla_attention
from jaxlab.kernels.dispatch import dispatch, resolve_target, warn_once


def _grouped_scores(q, k, mask):
  """Scaled float32 scores [B, K, G, T, S] with invisible entries at -inf-like values."""
  batch, q_len, heads, dim = q.shape
  q = q.reshape(batch, q_len, k.shape[2], heads // k.shape[2], dim)
  s = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * dim**-0.5
  return jnp.where(mask[:, None, None], s, jnp.finfo(jnp.float32).min)


def reference_forward(q, k, v, q_pos, q_seg, kv_pos, kv_seg) -> tuple[jax.Array, jax.Array]:
  """(out [B, T, H, D], lse [B, H, T]) in plain jnp; rows with no visible key: 0 and lse 0."""
  batch, q_len, heads, dim = q.shape
  mask = attention_mask(q_pos, kv_pos, q_seg, kv_seg)
  s = _grouped_scores(q, k, mask)
  seen = mask.any(-1)[:, None, None]  # [B, 1, 1, T]
  lse = jnp.where(seen, jax.nn.logsumexp(s, axis=-1), 0.0)
  p = jnp.where(mask[:, None, None], jnp.exp(s - lse[..., None]), 0.0)
  out = jnp.einsum("bkgts,bskd->btkgd", p.astype(v.dtype), v).reshape(q.shape)
  return out, lse.reshape(batch, heads, q_len)


def reference_backward(q, k, v, q_pos, q_seg, kv_pos, kv_seg, out, lse, do):
  """(dq, dk, dv) from the saved lse, the same math as the kernels on whole matrices."""
  batch, q_len, heads, dim = q.shape
  kv_heads = k.shape[2]
  mask = attention_mask(q_pos, kv_pos, q_seg, kv_seg)
  s = _grouped_scores(q, k, mask)
  lse = lse.reshape(batch, kv_heads, heads // kv_heads, q_len)[..., None]
  p = jnp.where(mask[:, None, None], jnp.exp(s - lse), 0.0)
  grouped = (batch, q_len, kv_heads, heads // kv_heads, dim)
  do_g = do.reshape(grouped)
  delta = jnp.einsum(
    "btkgd,btkgd->bkgt", out.reshape(grouped).astype(jnp.float32), do_g.astype(jnp.float32)
  )[..., None]
  dp = jnp.einsum("btkgd,bskd->bkgts", do_g, v, preferred_element_type=jnp.float32)
  ds = p * (dp - delta) * dim**-0.5
  dq = jnp.einsum("bkgts,bskd->btkgd", ds.astype(k.dtype), k).reshape(q.shape)
  dk = jnp.einsum("bkgts,btkgd->bskd", ds.astype(q.dtype), q.reshape(grouped))
  dv = jnp.einsum("bkgts,btkgd->bskd", p.astype(do.dtype), do_g)
  return dq, dk, dv


@dataclasses.dataclass(frozen=True)
class _Impl:
  """Static choice of implementation (hashable: a nondiff argument of the custom_vjp)."""

  target: str
  tpu_blocks: attention_tpu.TpuBlocks
  gpu_blocks: attention_gpu.GpuBlocks

  def forward(self, *args):
    return dispatch(
      "flash_attention",
      self.target,
      tpu=functools.partial(attention_tpu.forward, blocks=self.tpu_blocks),
      gpu=functools.partial(attention_gpu.forward, blocks=self.gpu_blocks),
      reference=reference_forward,
    )(*args)

  def backward(self, *args):
    return dispatch(
      "flash_attention",
      self.target,
      tpu=functools.partial(attention_tpu.backward, blocks=self.tpu_blocks),
      gpu=functools.partial(attention_gpu.backward, blocks=self.gpu_blocks),
      reference=reference_backward,
    )(*args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _attention(q, k, v, q_pos, q_seg, kv_pos, kv_seg, impl: _Impl):
  return impl.forward(q, k, v, q_pos, q_seg, kv_pos, kv_seg)[0]


def _attention_fwd(q, k, v, q_pos, q_seg, kv_pos, kv_seg, impl):
  out, lse = impl.forward(q, k, v, q_pos, q_seg, kv_pos, kv_seg)
  return out, (q, k, v, q_pos, q_seg, kv_pos, kv_seg, out, lse)


def _attention_bwd(impl, residuals, do):
  dq, dk, dv = impl.backward(*residuals, do)
  return dq, dk, dv, None, None, None, None


_attention.defvjp(_attention_fwd, _attention_bwd)


_Q_AXES = ("act_batch", "act_length", "act_heads", "act_head_dim")
_KV_AXES = ("act_batch", "act_length", "act_kv_heads", "act_head_dim")


def _unsplittable(mesh, q_spec, kv_spec, q_shape, kv_shape) -> str | None:
  """Why per-device attention over these specs would be wrong or impossible (None if fine)."""
  if any(spec[i] is not None for spec in (q_spec, kv_spec) for i in (1, 3)):
    return "the sequence or head_dim axis is sharded"
  if q_spec[0] != kv_spec[0] or q_spec[2] != kv_spec[2]:
    return "query and key/value heads (or batch) are sharded differently"
  for axes, dims in ((q_spec[0], (q_shape[0],)), (q_spec[2], (q_shape[2], kv_shape[2]))):
    names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
    if any(n not in mesh.shape for n in names):
      return f"the rules name mesh axes {names} that the mesh {tuple(mesh.shape)} lacks"
    if any(d % int(np.prod([mesh.shape[n] for n in names])) for d in dims):
      return f"a dimension of {dims} does not divide over mesh axes {names}"
  return None


def _per_device(call, q, k, v, *ids):
  """`call` once per device of the current mesh, over the activation sharding rules."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return call(q, k, v, *ids)
  q_spec = nn.logical_to_mesh_axes(_Q_AXES) or PartitionSpec(None, None, None, None)
  kv_spec = nn.logical_to_mesh_axes(_KV_AXES) or PartitionSpec(None, None, None, None)
  reason = _unsplittable(mesh, q_spec, kv_spec, q.shape, k.shape)
  if reason:
    warn_once(
      "flash_attention",
      f"runs unsplit on a {mesh.size}-device mesh (XLA replicates it) because {reason}",
    )
    return call(q, k, v, *ids)
  ids_spec = PartitionSpec(q_spec[0], None)
  return jax.shard_map(
    call,
    mesh=mesh,
    in_specs=(q_spec, kv_spec, kv_spec) + (ids_spec,) * 4,
    out_specs=q_spec,
    check_vma=False,
  )(q, k, v, *ids)


def flash_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  q_index: jax.Array,
  kv_index: jax.Array,
  q_segment_ids: jax.Array,
  kv_segment_ids: jax.Array,
  target: str | None = None,
  tpu_blocks: attention_tpu.TpuBlocks = attention_tpu.TpuBlocks(),
  gpu_blocks: attention_gpu.GpuBlocks = attention_gpu.GpuBlocks(),
) -> jax.Array:
  """Attention of q [B, T, H, D] over k/v [B, S, K, D] (K divides H), masked as in
  `attention_reference.attention_mask`; `target` as in `jaxlab.kernels.dispatch`."""
  target = resolve_target(target)
  if q.shape[1] == 1:
    warn_once(
      "flash_attention",
      "single-token decode (T=1) uses xla_attention: one query "
      "row would be padded to a whole query block",
    )
    target = "reference"
  if target == "reference":
    return xla_attention(
      q,
      k,
      v,
      q_index=q_index,
      kv_index=kv_index,
      q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids,
    )
  impl = _Impl(target, tpu_blocks, gpu_blocks)
  return _per_device(
    lambda *args: _attention(*args, impl), q, k, v, q_index, q_segment_ids, kv_index, kv_segment_ids
  )
