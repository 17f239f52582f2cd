"""FLOP accounting for MFU, with the convention written down.

Training FLOPs per token = 6 * N_matmul + 6 * n_layers * n_heads * head_dim * seq_len, where
  - N_matmul counts every parameter that takes part in a matrix multiply: all layer weights plus
    the output projection (the tied embedding counts once, as the projection); the input
    embedding lookup is a gather and norm scales are elementwise, so neither counts;
  - 6 = 2 (multiply-add) x 3 (forward, backward w.r.t. activations, backward w.r.t. weights);
  - attention scores and the weighted sum cost 4 * seq_len * n_heads * head_dim per token per
    layer forward, x3 for training = 12 * ..., and causal masking halves it: 6 * ... .
MFU = achieved FLOP/s per device / peak FLOP/s per device.
"""

from __future__ import annotations

from jaxlab.models.transformer import TransformerConfig

# Peak dense FLOP/s per device by device kind (bf16 for accelerators). CPU has no fixed peak.
PEAK_FLOPS = {
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
  "TPU v5": 459e12,
  "TPU v6 lite": 918e12,
  "TPU v6e": 918e12,
  "NVIDIA H100": 989e12,
  "NVIDIA H200": 989e12,
  "NVIDIA A100": 312e12,
}


def matmul_params(cfg: TransformerConfig) -> int:
  """Parameters that enter matrix multiplies (layer weights and the output projection)."""
  attention = cfg.d_model * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
  mlp = 3 * cfg.d_model * cfg.d_ff
  return cfg.n_layers * (attention + mlp) + cfg.d_model * cfg.vocab_size


def train_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
  """Training FLOPs per token under the convention in the module docstring."""
  attention = 6 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
  return 6.0 * matmul_params(cfg) + attention


def peak_flops_per_device(device_kind: str) -> float | None:
  """Peak FLOP/s for a `jax.Device.device_kind`, or None when unknown (e.g. CPU)."""
  for prefix, flops in PEAK_FLOPS.items():
    if device_kind.startswith(prefix):
      return flops
  return None
