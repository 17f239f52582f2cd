"""LLaMA-style decoder-only LM in Flax linen: RMSNorm, RoPE, SwiGLU, grouped-query attention.

Layers run under `nn.scan` (one compiled layer body, parameters stacked on a `layers` axis) with a
configurable remat policy; `scan_layers=False` builds them as separately named modules
(`layers_0`, ...) instead, which compiles longer but lets small models on CPU skip the stacking
copies of scanned parameters, gradients and residuals. Every parameter and activation carries
logical axis names that `jaxlab.parallel` maps onto the mesh. The same weights serve training
(packed sequences with segment ids) and KV-cache decoding (`init_cache` + calls with `cache=`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxlab.models.attention import get_attention
from jaxlab.models.positional import rope_tables, rotate

Cache = dict[str, Any]  # see init_cache

REMAT_POLICIES = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
  "everything": jax.checkpoint_policies.everything_saveable,
}
LOSS_IMPLS = ("xla", "fused")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Static model hyper-parameters (hashable, so it can be a jit static argument)."""

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  max_seq_len: int = 2048
  rope_theta: float = 10000.0
  # Llama 3.1 RoPE scaling (factor, low_freq_factor, high_freq_factor, original_max_len), or
  # None for plain RoPE (positional.llama3_scale).
  rope_llama3_scaling: tuple[float, float, float, int] | None = None
  norm_eps: float = 1e-5
  tie_embeddings: bool = False
  param_dtype: str = "float32"
  dtype: str = "float32"
  remat_policy: str = "none"
  scan_layers: bool = True  # False: separately named layers in straight-line code
  attention_impl: str = "xla"
  # xla attention in training: blocks of this many queries against their key prefix (0 = one
  # block). 64 is the measured CPU speed-up (about 3x at 256 tokens); pod presets use 512.
  attention_query_block: int = 64
  loss_impl: str = "xla"  # xla: full logits; fused: vocabulary-chunked linear + CE kernel
  init_std: float = 0.02

  def __post_init__(self):
    # A config.json round trip turns the tuple into a list; keep the config hashable.
    if isinstance(self.rope_llama3_scaling, list):
      object.__setattr__(self, "rope_llama3_scaling", tuple(self.rope_llama3_scaling))

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @classmethod
  def from_config(cls, model_cfg: ml_collections.ConfigDict) -> TransformerConfig:
    """Reads the `model` section: unknown keys and missing shape fields are a ConfigError."""
    from jaxlab.config import settings_from_section  # pylint: disable=g-import-not-at-top

    return settings_from_section(cls, model_cfg, "model")

  def validate(self) -> None:
    """Raises ValueError (one line) for inconsistent shapes or unknown options."""
    if self.d_model % self.n_heads:
      raise ValueError(f"model.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(
        f"model.n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}"
      )
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
    if self.rope_llama3_scaling is not None:
      _check_llama3_scaling(self.rope_llama3_scaling)
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(
        f"unknown model.remat_policy {self.remat_policy!r}; choose from {sorted(REMAT_POLICIES)}"
      )
    for name in ("param_dtype", "dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(
          f"unknown model.{name} {getattr(self, name)!r}; choose from {sorted(DTYPES)}"
        )
    get_attention(self.attention_impl)
    if self.attention_query_block < 0:
      raise ValueError(f"model.attention_query_block={self.attention_query_block} must be >= 0")
    if self.loss_impl not in LOSS_IMPLS:
      raise ValueError(
        f"unknown model.loss_impl {self.loss_impl!r}; choose from {sorted(LOSS_IMPLS)}"
      )


def _check_llama3_scaling(scaling: Any) -> None:
  """Raises ValueError (one line) unless `scaling` is (factor > 0, 0 < low < high, length > 0)."""
  message = (
    "model.rope_llama3_scaling must be (factor, low_freq_factor, high_freq_factor, "
    f"original_max_len) with factor > 0 and 0 < low < high, got {scaling!r}"
  )
  if not isinstance(scaling, tuple) or len(scaling) != 4:
    raise ValueError(message)
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scaling):
    raise ValueError(message)
  factor, low, high, original_max_len = scaling
  if not (factor > 0 and 0 < low < high and original_max_len > 0):
    raise ValueError(message)


def _init(cfg: TransformerConfig, names: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), names)


class RMSNorm(nn.Module):
  """Root-mean-square norm with a learned per-feature scale; statistics in float32."""

  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param(
      "scale",
      nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
      (x.shape[-1],),
      DTYPES[self.cfg.param_dtype],
    )
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.cfg.norm_eps)
    return (normed * scale.astype(jnp.float32)).astype(DTYPES[self.cfg.dtype])


class Attention(nn.Module):
  """Grouped-query self-attention with RoPE; writes into a KV cache when one is given."""

  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x, segment_ids, kv_segment_ids, rope, q_index, cache):
    cfg = self.cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    wq = self.param(
      "wq",
      _init(cfg, ("embed", "heads", "head_dim")),
      (cfg.d_model, cfg.n_heads, cfg.head_dim),
      pdtype,
    )
    wk = self.param(
      "wk",
      _init(cfg, ("embed", "kv_heads", "head_dim")),
      (cfg.d_model, cfg.n_kv_heads, cfg.head_dim),
      pdtype,
    )
    wv = self.param(
      "wv",
      _init(cfg, ("embed", "kv_heads", "head_dim")),
      (cfg.d_model, cfg.n_kv_heads, cfg.head_dim),
      pdtype,
    )
    wo = self.param(
      "wo",
      _init(cfg, ("heads", "head_dim", "embed")),
      (cfg.n_heads, cfg.head_dim, cfg.d_model),
      pdtype,
    )
    q = jnp.einsum("btd,dhk->bthk", x, wq.astype(dtype))
    k = jnp.einsum("btd,dhk->bthk", x, wk.astype(dtype))
    v = jnp.einsum("btd,dhk->bthk", x, wv.astype(dtype))
    q = nn.with_logical_constraint(q, ("act_batch", "act_length", "act_heads", "act_head_dim"))
    k = nn.with_logical_constraint(k, ("act_batch", "act_length", "act_kv_heads", "act_head_dim"))
    q, k = rotate(q, *rope), rotate(k, *rope)

    if cache is None:
      kv_index, new_cache = q_index, None
    else:
      start = q_index[0, 0]
      k = jax.lax.dynamic_update_slice(
        cache["k"], k.swapaxes(1, 2).astype(cache["k"].dtype), (0, 0, start, 0)
      )
      v = jax.lax.dynamic_update_slice(
        cache["v"], v.swapaxes(1, 2).astype(cache["v"].dtype), (0, 0, start, 0)
      )
      new_cache = {"k": k, "v": v}
      kv_index = jnp.broadcast_to(jnp.arange(k.shape[2], dtype=jnp.int32), kv_segment_ids.shape)
      k, v = k.astype(dtype), v.astype(dtype)

    out = get_attention(cfg.attention_impl)(
      q,
      k,
      v,
      q_index=q_index,
      kv_index=kv_index,
      q_segment_ids=segment_ids,
      kv_segment_ids=kv_segment_ids,
      kv_heads_first=cache is not None,
      query_block=cfg.attention_query_block if cache is None else 0,
    )
    out = nn.with_logical_constraint(out, ("act_batch", "act_length", "act_heads", "act_head_dim"))
    return jnp.einsum("bthk,hkd->btd", out, wo.astype(dtype)), new_cache


class SwiGLU(nn.Module):
  """Gated feed-forward block: down(silu(x W_gate) * (x W_up))."""

  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    w_gate = self.param("w_gate", _init(cfg, ("embed", "mlp")), (cfg.d_model, cfg.d_ff), pdtype)
    w_up = self.param("w_up", _init(cfg, ("embed", "mlp")), (cfg.d_model, cfg.d_ff), pdtype)
    w_down = self.param("w_down", _init(cfg, ("mlp", "embed")), (cfg.d_ff, cfg.d_model), pdtype)
    gate = jnp.einsum("btd,df->btf", x, w_gate.astype(dtype))
    up = jnp.einsum("btd,df->btf", x, w_up.astype(dtype))
    hidden = nn.with_logical_constraint(nn.silu(gate) * up, ("act_batch", "act_length", "act_mlp"))
    return jnp.einsum("btf,fd->btd", hidden, w_down.astype(dtype))


class DecoderLayer(nn.Module):
  """Pre-norm residual block; the scan carry is the residual stream, the scanned input the cache."""

  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x, layer_cache, segment_ids, kv_segment_ids, rope, q_index):
    attn_out, new_cache = Attention(self.cfg, name="attention")(
      RMSNorm(self.cfg, name="attention_norm")(x),
      segment_ids,
      kv_segment_ids,
      rope,
      q_index,
      layer_cache,
    )
    x = x + attn_out
    x = x + SwiGLU(self.cfg, name="mlp")(RMSNorm(self.cfg, name="mlp_norm")(x))
    x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))
    return x, new_cache


class Transformer(nn.Module):
  """The LM. `__call__(tokens, segment_ids, positions, cache=None) -> (logits, new_cache)`.

  With `return_hidden=True` (training without a cache) it returns `(final hidden states, output
  head [d_model, vocab])` instead of logits, for losses that fuse the projection.

  Without a cache the sequence attends causally within segments. With a cache (from
  `init_cache`) the tokens are written at `cache["index"]` and attend to everything cached.
  """

  cfg: TransformerConfig

  @nn.compact
  def __call__(
    self,
    tokens: jax.Array,
    segment_ids: jax.Array | None = None,
    positions: jax.Array | None = None,
    cache: Cache | None = None,
    return_hidden: bool = False,
  ):
    cfg = self.cfg
    batch, length = tokens.shape
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens)
    start = jnp.zeros((), jnp.int32) if cache is None else cache["index"]
    q_index = jnp.broadcast_to(start + jnp.arange(length, dtype=jnp.int32), (batch, length))
    if positions is None:
      positions = q_index
    embedding = self.param(
      "embedding",
      _init(cfg, ("vocab", "embed")),
      (cfg.vocab_size, cfg.d_model),
      DTYPES[cfg.param_dtype],
    )
    # The lookup reads a gathered copy of the table: a gather from a table sharded on both
    # axes has no efficient SPMD partitioning and would be silently replicated anyway.
    table = nn.with_logical_constraint(embedding, (None, None))
    x = jnp.take(table, tokens, axis=0).astype(DTYPES[cfg.dtype])
    x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))

    layer_cache, kv_segment_ids = None, segment_ids
    if cache is not None:
      cache = dict(
        cache,
        segment_ids=jax.lax.dynamic_update_slice(
          cache["segment_ids"], segment_ids.astype(jnp.int32), (0, start)
        ),
      )
      layer_cache = {"k": cache["k"], "v": cache["v"]}
      kv_segment_ids = cache["segment_ids"]

    block = DecoderLayer
    policy = REMAT_POLICIES[cfg.remat_policy]
    if cfg.remat_policy != "none":
      block = nn.remat(DecoderLayer, policy=policy, prevent_cse=False)
    rope = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_llama3_scaling)
    shared = (segment_ids, kv_segment_ids, rope, q_index)
    if cfg.scan_layers:
      layers = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        length=cfg.n_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )(cfg, name="layers")
      x, new_layer_cache = layers(x, layer_cache, *shared)
    else:
      new_caches = []
      for i in range(cfg.n_layers):
        this_cache = None if layer_cache is None else {n: c[i] for n, c in layer_cache.items()}
        x, new_cache = block(cfg, name=f"layers_{i}")(x, this_cache, *shared)
        new_caches.append(new_cache)
      new_layer_cache = (
        None if layer_cache is None else {n: tuple(c[n] for c in new_caches) for n in layer_cache}
      )
    x = RMSNorm(cfg, name="final_norm")(x)

    if cfg.tie_embeddings:
      head = embedding.T
    else:
      head = self.param(
        "lm_head",
        _init(cfg, ("embed", "vocab")),
        (cfg.d_model, cfg.vocab_size),
        DTYPES[cfg.param_dtype],
      )
    if return_hidden:
      return x, head.astype(DTYPES[cfg.dtype])
    logits = jnp.einsum("btd,dv->btv", x, head.astype(DTYPES[cfg.dtype]))
    logits = nn.with_logical_constraint(logits, ("act_batch", "act_length", "act_vocab"))
    if cache is None:
      return logits, None
    return logits, dict(new_layer_cache, segment_ids=cache["segment_ids"], index=start + length)


def init_cache(cfg: TransformerConfig, batch: int, max_length: int, dtype: Any = None) -> Cache:
  """An empty KV cache: k/v [layers, batch, kv_heads, slots, head_dim] (heads before slots, so
  that decoding attends without transposing the cache; with `scan_layers=False` a tuple of one
  [batch, kv_heads, slots, head_dim] array per layer, so that each layer updates its own buffer
  in place), slot segment ids and the next slot's index."""
  dtype = dtype or DTYPES[cfg.dtype]
  shape = (batch, cfg.n_kv_heads, max_length, cfg.head_dim)
  if cfg.scan_layers:
    k = v = jnp.zeros((cfg.n_layers,) + shape, dtype)
  else:
    k = v = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers))
  return {
    "k": k,
    "v": v,
    "segment_ids": jnp.zeros((batch, max_length), jnp.int32),
    "index": jnp.zeros((), jnp.int32),
  }


def count_params(params: Any) -> int:
  """Total number of parameters in a (possibly abstract) parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
