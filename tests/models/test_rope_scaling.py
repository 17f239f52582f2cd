"""Llama 3.1 RoPE scaling (positional.llama3_scale, model.rope_llama3_scaling)."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.config import settings_from_section
from jaxlab.models.positional import llama3_scale, rope_tables
from jaxlab.models.transformer import Transformer, TransformerConfig

CFG = TransformerConfig(
  vocab_size=40, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, init_std=0.5
)


def test_each_band_by_hand():
  """original_max_len / wavelength = 8 f here: 8 (>= high 4: kept), 2 (between: blended with
  weight (2 - 1) / (4 - 1) = 1/3 on the unscaled frequency), 0.8 (< low 1: divided by factor)."""
  inv_freq = jnp.array([1.0, 0.25, 0.1])
  scaled = llama3_scale(inv_freq, 2.0, 1.0, 4.0, 8 * 2 * math.pi)
  blended = (2 / 3) * 0.25 / 2.0 + (1 / 3) * 0.25
  np.testing.assert_allclose(scaled, [1.0, blended, 0.05], rtol=1e-6)


def test_no_scaling_is_the_plain_table_and_factor_one_changes_nothing():
  positions = jnp.arange(12)[None, :] * 37
  plain = rope_tables(positions, 16, 500.0)
  expected = 500.0 ** (-np.arange(0, 16, 2) / 16) * np.asarray(positions)[0, :, None]
  np.testing.assert_allclose(plain[0][0, :, 0], np.cos(expected), atol=1e-5)
  unit = rope_tables(positions, 16, 500.0, (1.0, 1.0, 4.0, 64))
  np.testing.assert_allclose(unit[0], plain[0], atol=1e-4)  # float32 rounding of f * 1
  scaled = rope_tables(positions, 16, 500.0, (8.0, 1.0, 4.0, 64))
  assert not np.allclose(plain[0], scaled[0])


def test_the_model_reads_the_scaling_from_its_config():
  tokens = jnp.arange(20)[None, :] % CFG.vocab_size
  params = Transformer(CFG).init(jax.random.PRNGKey(0), tokens)
  plain, _ = Transformer(CFG).apply(params, tokens)
  unit = dataclasses.replace(CFG, rope_llama3_scaling=(1.0, 1.0, 4.0, 8))
  np.testing.assert_allclose(Transformer(unit).apply(params, tokens)[0], plain, atol=1e-4)
  scaled = dataclasses.replace(CFG, rope_llama3_scaling=(8.0, 1.0, 4.0, 8))
  assert np.abs(Transformer(scaled).apply(params, tokens)[0] - plain).max() > 0.1


def test_config_round_trip_keeps_the_config_hashable():
  section = json.loads(json.dumps({**dataclasses.asdict(CFG), "rope_llama3_scaling": (8, 1, 4, 8)}))
  cfg = settings_from_section(TransformerConfig, section, "model")
  assert cfg.rope_llama3_scaling == (8, 1, 4, 8)
  hash(cfg)
  assert TransformerConfig(**dataclasses.asdict(CFG)).rope_llama3_scaling is None


@pytest.mark.parametrize(
  "scaling", [(8.0, 1.0, 4.0), (8.0, 4.0, 1.0, 8192), (0.0, 1.0, 4.0, 8192), ("8", 1, 4, 8192)]
)
def test_invalid_scaling_is_a_one_line_error(scaling):
  with pytest.raises(ValueError, match="model.rope_llama3_scaling must be"):
    dataclasses.replace(CFG, rope_llama3_scaling=scaling).validate()
