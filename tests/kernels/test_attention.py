"""Flash attention kernels (interpreted on CPU) against xla_attention: outputs and gradients."""

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

from jaxlab.kernels.attention import flash_attention
from jaxlab.kernels.attention_gpu import GpuBlocks
from jaxlab.kernels.attention_reference import xla_attention
from jaxlab.kernels.attention_tpu import TpuBlocks
from jaxlab.models.attention import get_attention
from jaxlab.parallel.mesh import default_logical_rules
from tests.kernels.helpers import assert_close, cotangent, fast_jit

# Length 360 leaves ragged tails for every block size below; the packed documents make some
# block pairs skippable at both ends of a block's visited range.
BLOCKS = dict(tpu_blocks=TpuBlocks(128, 128, 128, 128), gpu_blocks=GpuBlocks(64, 64, 32, 64))


def _inputs(dtype, heads, kv_heads, length=360, dim=32, packed_at=(150, 330)):
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (2, length, heads, dim)).astype(dtype)
  k = jax.random.normal(keys[1], (2, length, kv_heads, dim)).astype(dtype)
  v = jax.random.normal(keys[2], (2, length, kv_heads, dim)).astype(dtype)
  pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (2, length))
  # Row 0: two packed documents and a padded tail; row 1: one causal sequence.
  first, end = packed_at
  packed = jnp.concatenate([jnp.full(first, 1), jnp.full(end - first, 2), jnp.zeros(length - end)])
  seg = jnp.stack([packed, jnp.ones(length)]).astype(jnp.int32)
  return q, k, v, dict(q_index=pos, kv_index=pos, q_segment_ids=seg, kv_segment_ids=seg)


def _value_and_grads(attention, q, k, v, masks):
  weight = cotangent(q.shape)

  def loss(q, k, v):
    out = attention(q, k, v, **masks)
    return jnp.sum(out.astype(jnp.float32) * weight), out

  (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
  return out, grads


@functools.cache
def _expected(dtype, heads, kv_heads):
  """xla_attention's output and gradients on the (upcast) inputs, shared by the targets."""
  q, k, v, masks = _inputs(dtype, heads, kv_heads)
  upcast = [x.astype(jnp.float32) for x in (q, k, v)]
  return fast_jit(lambda *a: _value_and_grads(xla_attention, *a, masks))(*upcast)


def _check_against_reference(target, dtype, heads, kv_heads):
  q, k, v, masks = _inputs(dtype, heads, kv_heads)
  kernel = fast_jit(
    lambda *a: _value_and_grads(
      lambda *b, **m: flash_attention(*b, **m, target=target, **BLOCKS), *a, masks
    )
  )
  out, grads = kernel(q, k, v)
  expected_out, expected_grads = _expected(dtype, heads, kv_heads)
  assert out.dtype == dtype
  assert_close(out, expected_out, dtype, "out")
  for name, got, want in zip("qkv", grads, expected_grads):
    assert_close(got, want, dtype, f"d{name}")


@pytest.mark.parametrize("target", ["tpu-interpret", "gpu-interpret"])
@pytest.mark.parametrize(
  "dtype,heads,kv_heads", [(jnp.float32, 2, 2), (jnp.bfloat16, 4, 2)], ids=["f32-mha", "bf16-gqa2"]
)
def test_kernels_match_reference(target, dtype, heads, kv_heads):
  _check_against_reference(target, dtype, heads, kv_heads)


def test_cpu_dispatch_matches_reference():
  """On CPU "auto" runs the jnp forward/backward of the custom_vjp (the lse-based math)."""
  _check_against_reference("auto", jnp.bfloat16, 4, 2)


def test_prefill_with_offset_queries():
  """Queries continuing a cached prefix (T < S, positions offset): the general-index path."""
  q, k, v, masks = _inputs(jnp.float32, 2, 1)
  offset = dict(
    masks, q_index=masks["q_index"][:, 200:300], q_segment_ids=masks["q_segment_ids"][:, 200:300]
  )
  out = fast_jit(lambda q: flash_attention(q, k, v, **offset, target="tpu-interpret", **BLOCKS))(
    q[:, 200:300]
  )
  expected = fast_jit(lambda q: xla_attention(q, k, v, **offset))(q[:, 200:300])
  assert_close(out, expected, jnp.float32, "out")


def test_registered_as_pallas_and_falls_back_for_decode(monkeypatch, caplog):
  q, k, v, masks = _inputs(jnp.float32, 4, 2, length=16, packed_at=(5, 16))
  # Decode: one query at the last position against the whole cache.
  step = dict(masks, q_index=masks["q_index"][:, -1:], q_segment_ids=masks["q_segment_ids"][:, -1:])
  monkeypatch.setenv("JAXLAB_KERNELS", "auto")

  def both(attention):
    return attention(q, k, v, **masks), attention(q[:, -1:], k, v, **step)

  with caplog.at_level(logging.WARNING):
    out, decoded = fast_jit(lambda: both(get_attention("pallas")))()
  assert "decode" in caplog.text
  expected = fast_jit(lambda: xla_attention(q, k, v, **masks))()
  assert_close(out, expected, jnp.float32, "out")
  # The decoded query is the last one of the full sequence: its output is that row of the prefill.
  assert_close(decoded, expected[:, -1:], jnp.float32, "decode out")


def test_runs_per_device_under_the_training_mesh():
  """With the trainer's mesh and logical rules the kernel is shard_mapped over batch and heads
  (here 2 x 2 x 2 devices over data, fsdp, tensor) and still matches xla_attention."""
  q, k, v, masks = _inputs(jnp.float32, 4, 2, length=16, packed_at=(5, 16))
  q, k, v = [jnp.concatenate([x, x[::-1]]) for x in (q, k, v)]  # batch 4
  masks = {name: jnp.concatenate([x, x]) for name, x in masks.items()}
  mesh = Mesh(
    np.array(jax.devices()[:8]).reshape(2, 2, 2),
    ("data", "fsdp", "tensor"),
    axis_types=(AxisType.Auto,) * 3,
  )
  with jax.set_mesh(mesh), nn.logical_axis_rules(default_logical_rules()):
    out, grads = fast_jit(
      lambda *a: _value_and_grads(
        lambda *b, **m: flash_attention(*b, **m, target="auto"), *a, masks
      )
    )(q, k, v)
    assert "shard_map" in str(
      jax.make_jaxpr(lambda q: flash_attention(q, k, v, **masks, target="auto"))(q)
    )
  expected_out, expected_grads = fast_jit(lambda *a: _value_and_grads(xla_attention, *a, masks))(
    q, k, v
  )
  assert_close(out, expected_out, jnp.float32, "out")
  for name, got, want in zip("qkv", grads, expected_grads):
    assert_close(got, want, jnp.float32, f"d{name}")
