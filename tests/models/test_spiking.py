import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.config import ConfigError
from jaxlab.kernels.lif_reference import Surrogate, lif_multistep, spike
from jaxlab.kernels.xnor_attention_reference import (
  append_position_codes,
  xnor_attention,
  xnor_attention_scores,
)
from jaxlab.models.positional import gray_position_codes, grid_coordinates
from jaxlab.models.spiking import Spikformer, SpikformerConfig, SpikingDense

RNG = np.random.RandomState(0)
TINY = dict(d_model=16, n_layers=1, n_heads=2, mlp_ratio=2)


def _binary(*shape):
  return jnp.asarray(RNG.rand(*shape) < 0.4, jnp.float32)


# ---------------------------------------------------------------- neurons


def test_lif_spikes_are_exactly_binary():
  x = jnp.asarray(RNG.randn(4, 3, 50) * 3, jnp.float32)
  spikes = lif_multistep(x)
  assert set(np.unique(spikes).tolist()) == {0.0, 1.0}


def test_lif_charge_fire_hard_reset():
  # Constant input 1.5, tau 2: H = 0.75, 1.125 (fire, reset to 0), 0.75, 1.125 (fire).
  spikes = lif_multistep(jnp.full((4, 1), 1.5), tau=2.0, v_th=1.0)
  np.testing.assert_array_equal(spikes[:, 0], [0, 1, 0, 1])
  # A lower threshold (the attention neuron's 0.5) fires on every step.
  np.testing.assert_array_equal(lif_multistep(jnp.full((4, 1), 1.5), v_th=0.5)[:, 0], [1, 1, 1, 1])


@pytest.mark.parametrize("surrogate", [Surrogate("arctan", 2.0), Surrogate("sigmoid", 4.0)])
def test_surrogate_gradient_matches_its_formula(surrogate):
  x = jnp.linspace(-2, 2, 41)
  grad = jax.grad(lambda x: spike(x, surrogate).sum())(x)
  if surrogate.kind == "arctan":
    expected = (surrogate.alpha / 2) / (1 + (math.pi * surrogate.alpha * x / 2) ** 2)
  else:
    sig = 1 / (1 + jnp.exp(-surrogate.alpha * x))
    expected = surrogate.alpha * sig * (1 - sig)
  np.testing.assert_allclose(grad, expected, rtol=1e-6)
  np.testing.assert_array_equal(spike(x, surrogate), (x >= 0).astype(jnp.float32))


def test_unknown_surrogate_is_rejected():
  with pytest.raises(ValueError, match="unknown surrogate"):
    Surrogate("relu", 1.0)


def test_lif_gradient_detaches_the_spike_in_the_reset():
  """Backward pass against the chain rule written out by hand for one neuron over T steps."""
  tau, v_th, surrogate = 2.0, 1.0, Surrogate("arctan", 2.0)
  x = np.array([1.8, 0.3, 2.6, 1.1, 0.9, 2.2], np.float32)
  w = np.array([0.5, -1.0, 2.0, 1.5, -0.5, 1.0], np.float32)
  grad = jax.grad(lambda x: (lif_multistep(x, tau, v_th, surrogate) * w).sum())(jnp.asarray(x))
  v, hs, ss = 0.0, [], []
  for x_t in x:
    h = v + (x_t - v) / tau
    s = float(h >= v_th)
    v = h * (1 - s)
    hs.append(h)
    ss.append(s)
  expected, grad_v = np.zeros_like(x), 0.0
  for t in reversed(range(len(x))):
    grad_h = w[t] * float(surrogate.gradient(hs[t] - v_th)) + grad_v * (1 - ss[t])
    expected[t] = grad_h / tau
    grad_v = grad_h * (1 - 1 / tau)
  assert sum(ss) >= 2
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


# ---------------------------------------------------------------- attention


def test_xnor_scores_count_matching_bits():
  q, k = _binary(2, 7, 12), _binary(2, 5, 12)
  matching = (q[:, :, None, :] == k[:, None, :, :]).sum(-1)
  hamming = (q[:, :, None, :] != k[:, None, :, :]).sum(-1)
  np.testing.assert_array_equal(xnor_attention_scores(q, k), matching)
  np.testing.assert_array_equal(xnor_attention_scores(q, k), 12 - hamming)


@pytest.mark.parametrize("grid,two_d", [((16,), False), ((4, 4), True)])
def test_gray_pe_concatenation_is_xnor_plus_relative_bias(grid, two_d):
  """XNOR([q || G(i)], [k || G(j)]) = XNOR(q, k) + nb - Hamming(G(i), G(j)) (per axis in 2D),
  with token i at row i // 4, column i % 4 on the 4x4 grid (row-major), written out by hand."""
  bits = 5
  coords = [(i // 4, i % 4) for i in range(16)] if two_d else [(i,) for i in range(16)]
  gray = lambda n: n ^ (n >> 1)
  hamming = np.array(
    [
      [sum(bin(gray(a) ^ gray(b)).count("1") for a, b in zip(ci, cj)) for cj in coords]
      for ci in coords
    ]
  )
  bias = len(coords[0]) * bits - hamming
  codes = gray_position_codes(grid_coordinates(grid, two_d), bits)
  bits_of = lambda coord: [int(b) for axis in coord for b in format(gray(axis), f"0{bits}b")]
  np.testing.assert_array_equal(codes, [bits_of(coord) for coord in coords])
  q, k, v = _binary(3, 16, 8), _binary(3, 16, 8), _binary(3, 16, 8)
  concatenated = xnor_attention_scores(
    append_position_codes(q, codes), append_position_codes(k, codes)
  )
  np.testing.assert_array_equal(concatenated, xnor_attention_scores(q, k) + bias)
  out = xnor_attention(append_position_codes(q, codes), append_position_codes(k, codes), v, 0.25)
  np.testing.assert_allclose(out, xnor_attention(q, k, v, 0.25, bias=bias), rtol=1e-6)


# ---------------------------------------------------------------- model


def _model(pe, grid=(8,), features=3, **overrides):
  cfg = SpikformerConfig(**{**TINY, "pe": pe, **overrides})
  tokens = jnp.asarray(RNG.rand(4, *grid, features), jnp.float32)
  model = Spikformer(cfg, num_outputs=5)
  return model, model.init(jax.random.PRNGKey(0), tokens), tokens


@pytest.mark.parametrize(
  "pe,grid",
  [
    ("none", (8,)),
    ("conv", (8,)),
    ("gray", (8,)),
    ("log", (8,)),
    ("gray2d", (4, 4)),
    ("conv", (4, 4)),
  ],
)
def test_forward_spikes_are_binary_and_batch_stats_update(pe, grid):
  model, variables, tokens = _model(pe, grid)
  is_dense = lambda module, name: isinstance(module, SpikingDense) and name == "__call__"
  outputs, state = model.apply(
    variables,
    tokens,
    train=True,
    capture_intermediates=is_dense,
    mutable=["batch_stats", "intermediates"],
  )
  assert outputs.shape == (4, 5) and jnp.isfinite(outputs).all()
  spikes = jax.tree.leaves(state["intermediates"])
  assert len(spikes) == 6  # q, k, v, proj, mlp_in, mlp_out
  for s in spikes:
    assert set(np.unique(s).tolist()) <= {0.0, 1.0}
  moved = lambda stats: bool((stats["mean"] != 0).any())
  assert moved(state["batch_stats"]["embedding"]["BatchNorm_0"])
  assert moved(state["batch_stats"]["block_0"]["mlp_in"]["BatchNorm_0"])
  assert ("scale_logit" in variables["params"]["block_0"]["attention"]) == (
    pe in ("gray", "log", "gray2d")
  )


def test_evaluation_uses_running_averages_not_the_batch():
  model, variables, tokens = _model("log")
  full = model.apply(variables, tokens, train=False)
  single = model.apply(variables, tokens[:1], train=False)
  np.testing.assert_allclose(full[:1], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "pe,invariant", [("none", True), ("gray", False), ("log", False), ("conv", False)]
)
def test_without_positions_the_model_cannot_see_token_order(pe, invariant):
  """No-PE Spikformer is permutation invariant, which is why the order task needs an encoding."""
  # Batch statistics and a larger XNOR scale make the attention neurons fire at initialization.
  model, variables, tokens = _model(pe, grid=(16,), features=4, xnor_scale_init=-3.0)
  permuted = tokens[:, RNG.permutation(16)]
  apply = lambda x: model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  same = np.allclose(apply(tokens), apply(permuted), atol=1e-5)
  assert same == invariant


def test_gradients_reach_queries_keys_and_the_xnor_scale():
  model, variables, tokens = _model("gray")

  def loss(params):
    out, _ = model.apply(
      {**variables, "params": params}, tokens, train=True, mutable=["batch_stats"]
    )
    return (out**2).sum()

  grads = jax.grad(loss)(variables["params"])["block_0"]["attention"]
  for name in ("query", "key", "value"):
    assert float(jnp.abs(grads[name]["Dense_0"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["scale_logit"])) > 0


@pytest.mark.parametrize(
  "overrides,grid,message",
  [
    (dict(pe="gray2d"), (32,), "needs a 2D token grid"),
    (dict(pe="gray", gray_bits=4), (32,), "cannot code 5-bit positions"),
    (dict(pe="log", attention="vanilla"), (32,), "needs model.attention='xnor'"),
    (dict(pe="alibi"), (32,), "unknown model.pe 'alibi'"),
    (dict(d_model=30, n_heads=4), (32,), "not divisible"),
    (dict(neuron_impl="cuda"), (32,), "unknown model.neuron_impl 'cuda'"),
    (dict(pe="log", attention_impl="pallas"), (32,), "attention_impl='pallas' is the XNOR kernel"),
    (dict(pe="conv", attention_impl="pallas"), (32,), "attention_impl='pallas' is the XNOR kernel"),
  ],
)
def test_config_validation(overrides, grid, message):
  with pytest.raises(ValueError, match=message):
    SpikformerConfig(**overrides).validate(grid)


def test_from_config_rejects_unknown_model_keys():
  section = ml_collections.ConfigDict({**TINY, "pe": "gray"})
  assert SpikformerConfig.from_config(section) == SpikformerConfig(**TINY, pe="gray")
  section.time_step = 2
  with pytest.raises(
    ConfigError,
    match=r"unknown config key 'model\.time_step' "
    r"\(did you mean 'model\.time_steps'\?\)",
  ):
    SpikformerConfig.from_config(section)


@pytest.mark.parametrize("pe", ["gray", "none"])
def test_pallas_kernels_match_the_jnp_model(pe, monkeypatch):
  """neuron_impl / attention_impl='pallas' (TPU kernels, interpreted) == the jnp model: outputs,
  batch statistics and parameter gradients."""
  monkeypatch.setenv("JAXLAB_KERNELS", "tpu-interpret")
  overrides = dict(attention="xnor", time_steps=3)
  model, variables, tokens = _model(pe, **overrides)
  fused = Spikformer(
    SpikformerConfig(
      **{**TINY, "pe": pe, **overrides, "neuron_impl": "pallas", "attention_impl": "pallas"}
    ),
    num_outputs=5,
  )

  def loss_and_state(model):
    def loss(params):
      out, state = model.apply(
        {**variables, "params": params}, tokens, train=True, mutable=["batch_stats"]
      )
      return (out**2).sum(), (out, state)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

  (_, (out, state)), grads = loss_and_state(model)
  (_, (fused_out, fused_state)), fused_grads = loss_and_state(fused)
  np.testing.assert_allclose(fused_out, out, rtol=1e-5, atol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fused_state, state
  )
  flat = jax.tree_util.tree_leaves_with_path(grads)
  fused_flat = dict(jax.tree_util.tree_leaves_with_path(fused_grads))
  for path, grad in flat:
    scale = max(float(jnp.abs(grad).max()), 1e-3)
    error = float(jnp.abs(fused_flat[path] - grad).max()) / scale
    assert error < 1e-4, (jax.tree_util.keystr(path), error)
  assert float(jnp.abs(grads["block_0"]["attention"]["query"]["Dense_0"]["kernel"]).sum()) > 0
