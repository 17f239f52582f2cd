"""A critic for PPO: the LM backbone with a linear value head (no bias) on its final hidden states.

`ValueModel(cfg)(tokens, segment_ids, positions) -> values [B, T] float32`, the value of the
state after each input position (aligned with the LM's next-token targets). The backbone is a
`Transformer` named "backbone", so a trained LM's parameters drop in as `params["backbone"]`
(`critic_params`); its output head is carried but unused. The head's kernel is named on the
logical axes ("embed", None) like the rest of the model, so it shards with the backbone. It
starts at zero: a fresh critic values every state at 0 and the first advantages are the returns.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.models.transformer import DTYPES, Transformer, TransformerConfig

HEAD = "value_head"


class ValueModel(nn.Module):
  """Backbone + Dense(1, no bias); values in float32."""

  cfg: TransformerConfig

  @nn.compact
  def __call__(
    self,
    tokens: jax.Array,
    segment_ids: jax.Array | None = None,
    positions: jax.Array | None = None,
  ) -> jax.Array:
    hidden, _ = Transformer(self.cfg, name="backbone")(
      tokens, segment_ids, positions, return_hidden=True
    )
    head = nn.Dense(
      1,
      use_bias=False,
      dtype=jnp.float32,
      param_dtype=DTYPES[self.cfg.param_dtype],
      kernel_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed", None)),
      name=HEAD,
    )
    return head(hidden.astype(jnp.float32))[..., 0]


def critic_params(backbone: Any, cfg: TransformerConfig) -> dict[str, Any]:
  """Critic parameters from trained LM parameters: the backbone as given, a zero value head."""
  kernel = jnp.zeros((cfg.d_model, 1), DTYPES[cfg.param_dtype])
  return {"backbone": backbone, HEAD: {"kernel": kernel}}
