"""Benchmark presets: the same LLaMA shapes for jaxlab and its peers."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchPreset:
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  seq_len: int
  batch: int


PRESETS = {
  "tiny": BenchPreset(
    vocab_size=512, d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=688, seq_len=256, batch=8
  ),
  "small": BenchPreset(
    vocab_size=4096,
    d_model=512,
    n_layers=8,
    n_heads=8,
    n_kv_heads=4,
    d_ff=1376,
    seq_len=512,
    batch=4,
  ),
}


def get_preset(name: str) -> BenchPreset:
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
  return PRESETS[name]
