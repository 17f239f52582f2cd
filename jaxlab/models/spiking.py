"""Spikformer in Flax linen with relative positional encodings for binary attention.

Activations are [T, B, L, D] (time steps first). Every Linear (and the conv-PE convolution) is
followed by BatchNorm over all axes but the features (batch statistics while training, running
averages at evaluation, kept in the `batch_stats` collection) and a multi-step LIF neuron.
Inputs are tokens [B, *grid, F] on a 1D (sequence) or 2D (image patches) grid, embedded
token-wise by Linear-BN-LIF (`stem='linear'`), or raw images [B, H, W, C] that Spikformer's
spiking patch-splitting stem turns into an (H/4, W/4) token grid (`stem='sps'`,
jaxlab.models.spiking_stem); either is fed identically at every time step (direct encoding).
Heads average over time, then over tokens (`head='mean'`, Spikformer's classifier) or flatten
the tokens (`head='flatten'`, the usual forecasting head, which knows which token is the most
recent).

Positional encodings (`pe`): none; conv (Spikformer's convolutional branch on the embedded token
grid); gray / gray2d (Gray codes of the raster index, or of row and column, appended to every
head's queries and keys); conv_gray2d (both conv and gray2d, the paper's best image model);
log (the Toeplitz Log-PE bias added to the XNOR scores).

Kernels: `neuron_impl='pallas'` runs every LIF layer as the fused multi-step Pallas kernel
(`jaxlab.kernels.lif`), `attention_impl='pallas'` the XNOR attention (Gray codes included) as the
tiled kernel (`jaxlab.kernels.xnor_attention`); 'xla' (default) is the jnp reference. The
kernels' platform dispatch applies (the reference on CPU unless $JAXLAB_KERNELS says otherwise).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab.kernels import lif as lif_kernel
from jaxlab.kernels import xnor_attention as xnor_kernel
from jaxlab.kernels.lif_reference import Surrogate, lif_multistep
from jaxlab.kernels.xnor_attention_reference import append_position_codes, xnor_attention
from jaxlab.models.positional import (
  gray_position_codes,
  grid_coordinates,
  log_relative_bias,
  min_gray_bits,
)
from jaxlab.models.spiking_attention import dot_product_attention
from jaxlab.models.spiking_stem import SPS_DOWNSAMPLE, SpikingPatchSplitting, sps_token_grid

POSITIONAL_ENCODINGS = ("none", "conv", "gray", "gray2d", "conv_gray2d", "log")
STEMS = ("linear", "sps")
ATTENTIONS = ("auto", "vanilla", "xnor")
HEADS = ("mean", "flatten")
IMPLS = ("xla", "pallas")
# The paper's pairing: the relative encodings need XNOR attention, the baselines use vanilla SSA.
XNOR_ENCODINGS = ("gray", "gray2d", "conv_gray2d", "log")
CONV_ENCODINGS = ("conv", "conv_gray2d")
GRAY_ENCODINGS = ("gray", "gray2d", "conv_gray2d")
GRAY_2D_ENCODINGS = ("gray2d", "conv_gray2d")


@dataclasses.dataclass(frozen=True)
class SpikformerConfig:
  """Static hyper-parameters (hashable). `gray_bits=0` uses ceil(log2 positions) per axis.

  `xnor_scale_init` is sigmoid^-1 of the initial XNOR attention scale. The paper uses -4; at
  this size (16-bit heads, 32 tokens) that leaves the attention neurons below threshold and the
  order task stalls below what Gray codes allow, while -3 reaches it for every seed."""

  d_model: int = 32
  n_layers: int = 2
  n_heads: int = 2
  mlp_ratio: int = 4
  time_steps: int = 4
  tau: float = 2.0
  v_th: float = 1.0
  attention_v_th: float = 0.5
  surrogate: str = "arctan"
  surrogate_alpha: float = 2.0
  pe: str = "none"
  stem: str = "linear"
  attention: str = "auto"
  gray_bits: int = 0
  qk_scale: float = 0.125
  xnor_scale_init: float = -3.0
  bn_momentum: float = 0.9
  head: str = "mean"
  neuron_impl: str = "xla"
  attention_impl: str = "xla"

  @property
  def attention_kind(self) -> str:
    """'xnor' or 'vanilla'; 'auto' picks XNOR exactly for the encodings that need it."""
    if self.attention != "auto":
      return self.attention
    return "xnor" if self.pe in XNOR_ENCODINGS else "vanilla"

  @property
  def neuron_surrogate(self) -> Surrogate:
    return Surrogate(self.surrogate, self.surrogate_alpha)

  @classmethod
  def from_config(cls, model_cfg: ml_collections.ConfigDict) -> SpikformerConfig:
    """Reads the `model` section: unknown keys are a ConfigError naming the nearest field."""
    from jaxlab.config import settings_from_section  # pylint: disable=g-import-not-at-top

    return settings_from_section(cls, model_cfg, "model")

  def token_grid(self, input_grid: tuple[int, ...]) -> tuple[int, ...]:
    """The grid of tokens the Transformer sees for inputs on `input_grid` (after the stem)."""
    return sps_token_grid(input_grid) if self.stem == "sps" else tuple(input_grid)

  def validate(self, grid: tuple[int, ...] | None = None) -> None:
    """Raises ValueError (one line) for unknown options or shapes that do not fit; with the
    input grid it also checks the stem's image size, that the Gray codes have enough bits and
    that gray2d has a 2D token grid."""
    if self.pe not in POSITIONAL_ENCODINGS:
      raise ValueError(
        f"unknown model.pe {self.pe!r}; choose from {', '.join(POSITIONAL_ENCODINGS)}"
      )
    if self.stem not in STEMS:
      raise ValueError(f"unknown model.stem {self.stem!r}; choose from {', '.join(STEMS)}")
    if self.stem == "sps" and self.d_model % 4:
      raise ValueError(f"model.stem='sps' needs model.d_model divisible by 4, got {self.d_model}")
    if self.attention not in ATTENTIONS:
      raise ValueError(
        f"unknown model.attention {self.attention!r}; choose from {', '.join(ATTENTIONS)}"
      )
    if self.pe in XNOR_ENCODINGS and self.attention_kind != "xnor":
      raise ValueError(f"model.pe={self.pe!r} needs model.attention='xnor' (or 'auto')")
    for name in ("neuron_impl", "attention_impl"):
      if getattr(self, name) not in IMPLS:
        raise ValueError(
          f"unknown model.{name} {getattr(self, name)!r}; choose from {', '.join(IMPLS)}"
        )
    if self.attention_impl == "pallas" and (self.attention_kind != "xnor" or self.pe == "log"):
      raise ValueError(
        "model.attention_impl='pallas' is the XNOR kernel (Gray codes or no PE); "
        f"attention={self.attention_kind!r} with pe={self.pe!r} needs 'xla'"
      )
    if self.head not in HEADS:
      raise ValueError(f"unknown model.head {self.head!r}; choose from {', '.join(HEADS)}")
    if self.d_model % self.n_heads:
      raise ValueError(f"model.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
    self.neuron_surrogate  # noqa: B018  (raises for an unknown surrogate)
    if min(self.d_model, self.n_layers, self.n_heads, self.mlp_ratio, self.time_steps) < 1:
      raise ValueError("model sizes and time_steps must be positive")
    if grid is not None:
      if self.stem == "sps" and (len(grid) != 2 or any(side % SPS_DOWNSAMPLE for side in grid)):
        raise ValueError(
          f"model.stem='sps' needs images whose sides are multiples of {SPS_DOWNSAMPLE}, "
          f"this task has {tuple(grid)}"
        )
      grid = self.token_grid(grid)
      if self.pe in GRAY_2D_ENCODINGS and len(grid) != 2:
        raise ValueError(f"model.pe={self.pe!r} needs a 2D token grid, this task has {tuple(grid)}")
      needed = gray_bits_needed(grid, self.pe in GRAY_2D_ENCODINGS)
      if self.pe in GRAY_ENCODINGS and 0 < self.gray_bits < needed:
        raise ValueError(
          f"model.gray_bits={self.gray_bits} cannot code {needed}-bit positions "
          f"of the token grid {tuple(grid)}"
        )


def gray_bits_needed(grid: tuple[int, ...], two_d: bool) -> int:
  """Bits per axis that give every position its own code: per axis for 2D, raster index for 1D."""
  return min_gray_bits(max(grid) if two_d else int(np.prod(grid)))


def positional_terms(
  cfg: SpikformerConfig, grid: tuple[int, ...]
) -> tuple[jax.Array | None, jax.Array | None]:
  """(Gray codes [L, bits] to append to Q and K, Log-PE bias [L, L]); None where unused."""
  if cfg.pe in GRAY_ENCODINGS:
    two_d = cfg.pe in GRAY_2D_ENCODINGS
    bits = cfg.gray_bits or gray_bits_needed(grid, two_d)
    return gray_position_codes(grid_coordinates(grid, two_d), bits), None
  if cfg.pe == "log":
    return None, jnp.asarray(log_relative_bias(int(np.prod(grid))))
  return None, None


def lif(cfg: SpikformerConfig, x: jax.Array, v_th: float | None = None) -> jax.Array:
  """The configured LIF neuron over the leading time axis (jnp scan or the Pallas kernel)."""
  neuron = lif_kernel.lif_multistep if cfg.neuron_impl == "pallas" else lif_multistep
  return neuron(x, cfg.tau, cfg.v_th if v_th is None else v_th, cfg.neuron_surrogate)


class SpikingDense(nn.Module):
  """Linear (no bias) -> BatchNorm -> LIF on [T, ..., D_in]."""

  cfg: SpikformerConfig
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = nn.Dense(self.features, use_bias=False)(x)
    y = nn.BatchNorm(use_running_average=not train, momentum=self.cfg.bn_momentum)(y)
    return lif(self.cfg, y)


class SpikingEmbedding(nn.Module):
  """Tokens [B, *grid, F] -> spikes [T, B, L, D]: the stem (token-wise Linear -> BN -> LIF of the
  input repeated over T steps, or SPS on an image); with pe='conv' or 'conv_gray2d' plus
  Spikformer's branch LIF(BN(Conv3(x))) on the token grid added to the spikes."""

  cfg: SpikformerConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, train: bool) -> jax.Array:
    cfg = self.cfg
    batch = tokens.shape[0]
    if cfg.stem == "sps":
      neuron = lambda y: lif(cfg, y)
      x = SpikingPatchSplitting(cfg.d_model, cfg.time_steps, cfg.bn_momentum, neuron, name="sps")(
        tokens, train
      )
    else:
      current = nn.Dense(cfg.d_model, use_bias=False)(tokens)
      # The input is the same at every step, so the normalized current is computed once.
      current = nn.BatchNorm(use_running_average=not train, momentum=cfg.bn_momentum)(current)
      x = lif(cfg, jnp.broadcast_to(current, (cfg.time_steps,) + current.shape))
    grid = x.shape[2:-1]
    if cfg.pe in CONV_ENCODINGS:
      flat = x.reshape((cfg.time_steps * batch,) + x.shape[2:])
      conv = nn.Conv(cfg.d_model, (3,) * len(grid), padding="SAME", use_bias=False)(flat)
      conv = nn.BatchNorm(use_running_average=not train, momentum=cfg.bn_momentum)(conv)
      x = x + lif(cfg, conv.reshape(x.shape))
    return x.reshape(cfg.time_steps, batch, -1, cfg.d_model)


class SpikingSelfAttention(nn.Module):
  """SSA: binary Q, K, V = LIF(BN(Linear(x))) per head, vanilla or XNOR scores, no softmax,
  output LIF at `attention_v_th`, then a Linear-BN-LIF projection."""

  cfg: SpikformerConfig

  @nn.compact
  def __call__(
    self, x: jax.Array, codes: jax.Array | None, bias: jax.Array | None, train: bool
  ) -> jax.Array:
    cfg = self.cfg
    steps, batch, length, dim = x.shape
    head_dim = dim // cfg.n_heads

    def heads(name: str) -> jax.Array:
      y = SpikingDense(cfg, dim, name=name)(x, train)
      return y.reshape(steps, batch, length, cfg.n_heads, head_dim).swapaxes(2, 3)

    q, k, v = heads("query"), heads("key"), heads("value")
    if cfg.attention_kind == "vanilla":
      out = dot_product_attention(q, k, v, cfg.qk_scale)
    else:
      scale_logit = self.param("scale_logit", nn.initializers.constant(cfg.xnor_scale_init), ())
      scale = jax.nn.sigmoid(scale_logit)
      if cfg.attention_impl == "pallas":
        out = xnor_kernel.xnor_attention(q, k, v, scale, codes)
      else:
        if codes is not None:
          q, k = append_position_codes(q, codes), append_position_codes(k, codes)
        out = xnor_attention(q, k, v, scale, bias)
    out = out.swapaxes(2, 3).reshape(steps, batch, length, dim)
    out = lif(cfg, out, cfg.attention_v_th)
    return SpikingDense(cfg, dim, name="proj")(out, train)


class SpikformerBlock(nn.Module):
  """x + SSA(x), then x + MLP(x) with MLP = two Linear-BN-LIF layers (hidden mlp_ratio * D)."""

  cfg: SpikformerConfig

  @nn.compact
  def __call__(
    self, x: jax.Array, codes: jax.Array | None, bias: jax.Array | None, train: bool
  ) -> jax.Array:
    cfg = self.cfg
    x = x + SpikingSelfAttention(cfg, name="attention")(x, codes, bias, train)
    hidden = SpikingDense(cfg, cfg.mlp_ratio * cfg.d_model, name="mlp_in")(x, train)
    return x + SpikingDense(cfg, cfg.d_model, name="mlp_out")(hidden, train)


class Spikformer(nn.Module):
  """Tokens [B, *grid, F] -> outputs [B, num_outputs] (class logits or forecasts)."""

  cfg: SpikformerConfig
  num_outputs: int

  @nn.compact
  def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
    codes, bias = positional_terms(self.cfg, self.cfg.token_grid(tokens.shape[1:-1]))
    x = SpikingEmbedding(self.cfg, name="embedding")(tokens, train)
    for i in range(self.cfg.n_layers):
      x = SpikformerBlock(self.cfg, name=f"block_{i}")(x, codes, bias, train)
    features = x.mean(axis=0)
    if self.cfg.head == "mean":
      features = features.mean(axis=1)
    else:
      features = features.reshape(features.shape[0], -1)
    return nn.Dense(self.num_outputs, name="head")(features)
