"""Spikformer's spiking patch-splitting stem (SPS) for images: conv3x3-BN-LIF blocks with
max-pooling that turn the raw image into a token grid of spikes (arXiv 2209.15425, section 3.1).

Kept apart from the Transformer (jaxlab.models.spiking), which picks it with `model.stem='sps'`
and gives it its neuron, so every positional encoding is compared on the same feature extractor.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# (channels as a divisor of d_model, max-pool after the block) of the three conv blocks.
SPS_BLOCKS = ((4, False), (2, True), (1, True))
SPS_DOWNSAMPLE = 2 ** sum(pool for _, pool in SPS_BLOCKS)


def sps_token_grid(image_grid: tuple[int, ...]) -> tuple[int, ...]:
  """The token grid the stem makes of an image grid (H, W): each side divided by 4."""
  return tuple(side // SPS_DOWNSAMPLE for side in image_grid)


class SpikingPatchSplitting(nn.Module):
  """Images [B, H, W, C] -> spikes [T, B, H/4, W/4, features].

  Block i: Conv3x3 (SAME, no bias) -> BatchNorm -> LIF, with features / (4, 2, 1) channels;
  blocks 2 and 3 end in a 3x3 max-pool of stride 2 over the spikes (which keeps them binary).
  The image is the same at every step (direct encoding), so the first conv and BN run once."""

  features: int
  time_steps: int
  bn_momentum: float
  neuron: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    steps, batch = self.time_steps, images.shape[0]
    merge = lambda x: x.reshape((steps * batch,) + x.shape[2:])
    split = lambda x: x.reshape((steps, batch) + x.shape[1:])

    def conv_bn(x: jax.Array, width: int) -> jax.Array:
      x = nn.Conv(width, (3, 3), padding="SAME", use_bias=False)(x)
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(x)

    x = None
    for divisor, pool in SPS_BLOCKS:
      width = self.features // divisor
      if x is None:  # the static image: conv and BN once, the LIF over T steps
        current = conv_bn(images, width)
        x = self.neuron(jnp.broadcast_to(current, (steps,) + current.shape))
      else:
        x = self.neuron(split(conv_bn(merge(x), width)))
      if pool:
        x = split(nn.max_pool(merge(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))
    return x
