import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.kernels.lif_reference import lif_multistep
from jaxlab.models.spiking import Spikformer, SpikformerConfig, positional_terms
from jaxlab.models.spiking_stem import SpikingPatchSplitting, sps_token_grid

RNG = np.random.RandomState(0)


def test_sps_turns_an_image_into_a_quarter_size_grid_of_spikes():
  images = jnp.asarray(RNG.rand(3, 16, 12, 1), jnp.float32)
  stem = SpikingPatchSplitting(32, time_steps=4, bn_momentum=0.9, neuron=lif_multistep)
  variables = stem.init(jax.random.PRNGKey(0), images, train=False)
  spikes, _ = stem.apply(variables, images, train=True, mutable=["batch_stats"])
  assert spikes.shape == (4, 3, 4, 3, 32) and sps_token_grid((16, 12)) == (4, 3)
  assert set(np.unique(spikes).tolist()) == {0.0, 1.0}
  kernels = [variables["params"][f"Conv_{i}"]["kernel"].shape for i in range(3)]
  assert kernels == [(3, 3, 1, 8), (3, 3, 8, 16), (3, 3, 16, 32)]


@pytest.mark.parametrize("pe", ["none", "conv", "gray2d", "conv_gray2d", "log"])
def test_every_encoding_runs_on_the_same_stem(pe):
  cfg = SpikformerConfig(d_model=16, n_layers=1, n_heads=2, mlp_ratio=2, pe=pe, stem="sps")
  cfg.validate((16, 16))
  images = jnp.asarray(RNG.rand(4, 16, 16, 1), jnp.float32)
  model = Spikformer(cfg, num_outputs=10)
  variables = model.init(jax.random.PRNGKey(0), images)
  outputs, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
  assert outputs.shape == (4, 10) and jnp.isfinite(outputs).all()
  embedding = variables["params"]["embedding"]
  assert set(embedding["sps"]) == {
    "Conv_0",
    "Conv_1",
    "Conv_2",
    "BatchNorm_0",
    "BatchNorm_1",
    "BatchNorm_2",
  }
  assert ("Conv_0" in embedding) == (pe in ("conv", "conv_gray2d"))  # the conv-PE branch
  assert ("scale_logit" in variables["params"]["block_0"]["attention"]) == (
    pe not in ("none", "conv")
  )


def test_conv_gray2d_appends_row_and_column_codes_of_the_token_grid():
  cfg = SpikformerConfig(pe="conv_gray2d", stem="sps")
  codes, bias = positional_terms(cfg, cfg.token_grid((16, 16)))
  assert codes.shape == (16, 4) and bias is None  # 4x4 tokens, 2 bits per axis
  np.testing.assert_array_equal(codes[5], [0, 1, 0, 1])  # row 1, column 1: G(1) = 01


@pytest.mark.parametrize(
  "overrides,grid,message",
  [
    (dict(stem="conv"), (16, 16), "unknown model.stem 'conv'"),
    (dict(stem="sps"), (16, 10), "sides are multiples of 4"),
    (dict(stem="sps"), (32,), "sides are multiples of 4"),
    (dict(stem="sps", d_model=30, n_heads=2), (16, 16), "d_model divisible by 4"),
    (dict(pe="conv_gray2d"), (32,), "'conv_gray2d' needs a 2D token grid"),
    (dict(pe="conv_gray2d", attention="vanilla"), (4, 4), "needs model.attention='xnor'"),
  ],
)
def test_stem_config_validation(overrides, grid, message):
  with pytest.raises(ValueError, match=message):
    SpikformerConfig(**overrides).validate(grid)
