"""DLL layers against a direct NumPy implementation of docs/dll.md, plus the properties the
spec relies on: errors go down through Theta (never W^T), DLL-FA and FA leave Theta alone."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.config import ConfigError
from jaxlab.models.dll import Conv2D, DLLOptions, LearningRule, dll_conv, dll_dense
from jaxlab.models.dll_nets import NetConfig, build_net, cnn, mlp, recurrent
from jaxlab.objectives.supervised import Classification
from jaxlab.train.optimizer import FeedbackAdamSettings, build_feedback_optimizer
from jaxlab.train.state import create_state, no_frozen_state
from jaxlab.train.step import make_train_step

SMOOTHING = 0.1


def _np_clip(x, bound):
  return np.clip(x, -bound, bound)


def _np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_output_error(logits, labels):
  """xi_L = y_smooth - softmax(z) (label smoothing 0.1)."""
  targets = np.eye(logits.shape[-1])[labels] * (1 - SMOOTHING) + SMOOTHING / logits.shape[-1]
  return targets - _np_softmax(logits)


def _np_tanh_prime(z):
  return 1 - np.tanh(z) ** 2


def _np_mlp_updates(params, x, labels, form, sign, clip, scale=2.0):
  """The spec's equations, layer by layer: [(dW_i, dTheta_i)] (ascent directions)."""
  ws = [np.asarray(p["w"], np.float64) for p in params]
  thetas = [np.asarray(p["theta"], np.float64) for p in params]
  n = len(ws)
  if form == "inner":
    acts = ["tanh"] * (n - 1) + ["identity"]
  else:
    acts = ["identity"] + ["tanh"] * (n - 1)
  f = {"tanh": np.tanh, "identity": lambda v: v}
  fp = {"tanh": _np_tanh_prime, "identity": np.ones_like}
  us = [np.asarray(x, np.float64).reshape(len(x), -1)]
  for w, a in zip(ws, acts):
    us.append(f[a](us[-1] @ w) if form == "inner" else f[a](us[-1]) @ w)
  xi = _np_output_error(us[-1], labels)
  updates = [None] * n
  for i in reversed(range(n)):
    u, a = us[i], acts[i]
    if form == "inner":
      delta = xi * fp[a](u @ ws[i])
      xi_in = np.zeros_like(u) if i == 0 else _np_clip(delta @ thetas[i].T, clip)
      d_w = _np_clip(scale * u.T @ delta, clip)
      d_theta = sign * _np_clip(scale * xi_in.T @ delta, clip)
    else:
      xi_in = np.zeros_like(u) if i == 0 else _np_clip((xi @ thetas[i].T) * fp[a](u), clip)
      d_w = _np_clip(scale * f[a](u).T @ xi, clip)
      d_theta = sign * _np_clip(scale * (xi_in * fp[a](u)).T @ xi, clip)
    updates[i] = (d_w, np.zeros_like(d_theta) if i == 0 else d_theta)
    xi = xi_in
  return updates


def _loss_grads(net, params, x, labels):
  """Cotangents of the summed task loss for every parameter (jitted: one compile, not one per
  op)."""
  loss = lambda p, x, y: (
    _objective(net)(p, {}, {}, {"inputs": x, "targets": y}, None, True).loss_sum
  )
  return jax.jit(jax.grad(loss))(params, x, labels)


@pytest.mark.parametrize(
  "form,sign,clip",
  [("inner", 1.0, 50.0), ("inner", -1.0, 0.05), ("outer", 1.0, 50.0), ("outer", -1.0, 0.05)],
)
def test_mlp_cotangents_equal_numpy_spec(form, sign, clip):
  rng = np.random.RandomState(0)
  x = rng.rand(6, 4, 4, 1).astype(np.float32)
  labels = rng.randint(0, 5, size=6)
  net = mlp([16, 12, 8, 5], LearningRule("dll", form=form, theta_sign=sign, clip=clip))
  params = net.init(jax.random.PRNGKey(0))
  grads = _loss_grads(net, params, x, labels)
  expected = _np_mlp_updates(params, x, labels, form, sign, clip)
  for layer, (grad, (d_w, d_theta)) in enumerate(zip(grads, expected)):
    np.testing.assert_allclose(-grad["w"], d_w, rtol=2e-4, atol=1e-5, err_msg=f"dW {layer}")
    np.testing.assert_allclose(
      -grad["theta"], d_theta, rtol=2e-4, atol=1e-5, err_msg=f"dTheta {layer}"
    )
  if clip < 1:  # the small bound is actually reached
    assert np.max(np.abs(expected[1][0])) == pytest.approx(clip)


def _np_patches(x, k):
  """SAME-padded k x k patches of x [B, H, W, C] -> [B, H, W, k*k*C] (HWIO kernel order)."""
  pad = k // 2
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1:3]
  return np.stack(
    [xp[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)], axis=3
  ).reshape(*x.shape[:3], k * k * x.shape[3])


def _np_patches_transpose(cols, k, channels):
  """Adjoint of _np_patches: scatter-add patch columns back onto the image."""
  b, h, w, _ = cols.shape
  pad = k // 2
  out = np.zeros((b, h + 2 * pad, w + 2 * pad, channels))
  cols = cols.reshape(b, h, w, k, k, channels)
  for i in range(k):
    for j in range(k):
      out[:, i : i + h, j : j + w, :] += cols[:, :, :, i, j, :]
  return out[:, pad : pad + h, pad : pad + w, :]


@pytest.mark.parametrize("form", ["inner", "outer"])
def test_conv_cotangents_equal_numpy_spec(form):
  rng = np.random.RandomState(1)
  k, c_in, c_out = 3, 2, 3
  u = rng.randn(2, 5, 5, c_in).astype(np.float32)
  w, theta = (0.3 * rng.randn(k, k, c_in, c_out).astype(np.float32) for _ in range(2))
  g = rng.randn(2, 5, 5, c_out).astype(np.float32)
  options = DLLOptions(form=form, theta_sign=-1.0, clip=3.0, scale=2.0)
  _, vjp = jax.vjp(lambda *a: dll_conv(*a, options, Conv2D()), u, w, theta)
  u_cot, w_cot, theta_cot = vjp(g)

  xi_out = -g.astype(np.float64)
  w_flat, theta_flat = w.reshape(-1, c_out), theta.reshape(-1, c_out)
  u64 = u.astype(np.float64)
  if form == "inner":
    presynaptic = u64
    delta = xi_out * _np_tanh_prime(_np_patches(u64, k) @ w_flat)
    xi_in = _np_clip(_np_patches_transpose(delta @ theta_flat.T, k, c_in), 3.0)
    theta_presynaptic = xi_in
  else:
    presynaptic = np.tanh(u64)
    delta = xi_out
    xi_in = _np_clip(
      _np_patches_transpose(delta @ theta_flat.T, k, c_in) * _np_tanh_prime(u64), 3.0
    )
    theta_presynaptic = xi_in * _np_tanh_prime(u64)

  def kernel_update(source):  # sum over batch and positions of patch^T delta, scaled, clipped
    cols = _np_patches(source, k).reshape(-1, k * k * c_in)
    return _np_clip(2.0 * cols.T @ delta.reshape(-1, c_out), 3.0).reshape(w.shape)

  np.testing.assert_allclose(-u_cot, xi_in, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(-w_cot, kernel_update(presynaptic), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    -theta_cot, -1.0 * kernel_update(theta_presynaptic), rtol=1e-4, atol=1e-4
  )


def _np_rnn_updates(params, xs, labels, sign, clip):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  b, t, _ = xs.shape
  h = np.zeros((b, p["w_h"].shape[0]))
  hs, zs = [], []
  for step in range(t):
    z = h @ p["w_h"] + xs[:, step] @ p["w_x"]
    h = np.tanh(z)
    hs.append(h), zs.append(z)
  xi_y = [_np_output_error(hs[s] @ p["w_y"], labels[:, s]) for s in range(t)]
  xi_h, delta = [None] * t, [None] * t
  next_delta = np.zeros_like(hs[0])
  for s in reversed(range(t)):
    xi_h[s] = _np_clip(xi_y[s] @ p["theta_y"].T + next_delta @ p["theta_h"].T, clip)
    delta[s] = next_delta = xi_h[s] * _np_tanh_prime(zs[s])
  h_prev = [np.zeros_like(hs[0])] + hs[:-1]

  def total(pairs):
    return _np_clip(2.0 * sum(a.T @ c for a, c in pairs), clip)

  return {
    "w_x": total((xs[:, s], delta[s]) for s in range(t)),
    "w_h": total((h_prev[s], delta[s]) for s in range(t)),
    "w_y": total((hs[s], xi_y[s]) for s in range(t)),
    "theta_y": sign * total((xi_h[s], xi_y[s]) for s in range(t)),
    "theta_h": sign * total((xi_h[s - 1], delta[s]) for s in range(1, t)),
  }


@pytest.mark.parametrize("sign,clip", [(1.0, 50.0), (-1.0, 0.2)])
def test_rnn_cotangents_equal_numpy_spec(sign, clip):
  rng = np.random.RandomState(2)
  vocab, hidden = 5, 6
  tokens = rng.randint(0, vocab, size=(3, 4))
  net = recurrent(vocab, hidden, LearningRule("dll", theta_sign=sign, clip=clip))
  params = jax.tree.map(lambda v: 8 * v, net.init(jax.random.PRNGKey(3)))  # larger errors
  grads = _loss_grads(net, params, tokens, tokens)
  expected = _np_rnn_updates(params, np.eye(vocab)[tokens], tokens, sign, clip)
  for name, value in expected.items():
    np.testing.assert_allclose(-grads[name], value, rtol=2e-4, atol=1e-5, err_msg=name)


def _tie_theta_to_w(params):
  if isinstance(params, list):
    return [_tie_theta_to_w(p) for p in params]
  if "w" in params:
    return {"w": params["w"], "theta": params["w"]}
  if "w_h" in params:
    return {**params, "theta_h": params["w_h"], "theta_y": params["w_y"]}
  return {k: _tie_theta_to_w(v) for k, v in params.items()}


_RNG = np.random.RandomState(0)


@pytest.mark.parametrize(
  "build,inputs,labels",
  [
    (lambda r: mlp([16, 8, 5], r), _RNG.rand(4, 16).astype(np.float32), _RNG.randint(0, 5, 4)),
    (
      lambda r: cnn((4, 4, 1), (3, 2), ("max", "avg"), (6,), 5, r),
      _RNG.rand(4, 4, 4, 1).astype(np.float32),
      _RNG.randint(0, 5, 4),
    ),
    (lambda r: recurrent(5, 6, r), _RNG.randint(0, 5, (4, 3)), _RNG.randint(0, 5, (4, 3))),
  ],
  ids=["mlp", "cnn", "rnn"],
)
def test_with_theta_equal_to_w_dll_is_backprop(build, inputs, labels):
  params = _tie_theta_to_w(build(LearningRule("bp")).init(jax.random.PRNGKey(0)))
  bp = _loss_grads(build(LearningRule("bp")), params, inputs, labels)
  dll = _loss_grads(build(LearningRule("dll", clip=math.inf, scale=1.0)), params, inputs, labels)
  w_only = lambda tree: [
    leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    if not str(getattr(path[-1], "key", "")).startswith("theta")
  ]
  for a, b in zip(w_only(bp), w_only(dll)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_error_sent_down_depends_on_theta_not_on_w():
  rng = np.random.RandomState(4)
  u, g = rng.randn(3, 4).astype(np.float32), rng.randn(3, 5).astype(np.float32)
  w, theta = rng.randn(4, 5).astype(np.float32), rng.randn(4, 5).astype(np.float32)
  options = DLLOptions(activation="identity")

  def input_cotangent(w, theta):
    return jax.vjp(lambda x: dll_dense(x, w, theta, options), u)[1](g)[0]

  base = input_cotangent(w, theta)
  np.testing.assert_allclose(base, g @ theta.T, rtol=1e-5)  # -xi_in = -(xi_out Theta^T)
  other_w = w + rng.randn(4, 5).astype(np.float32)
  np.testing.assert_array_equal(input_cotangent(other_w, theta), base)
  assert not np.allclose(input_cotangent(w, theta + 1.0), base)
  assert not np.allclose(base, g @ w.T)


def test_upstream_updates_follow_theta_of_the_layer_above():
  net = mlp([6, 5, 4, 3], LearningRule("dll"))
  params = net.init(jax.random.PRNGKey(0))
  x, labels = np.random.RandomState(0).rand(4, 6).astype(np.float32), np.array([0, 1, 2, 0])
  base = _loss_grads(net, params, x, labels)
  changed = [dict(p) for p in params]
  changed[2]["theta"] = params[2]["theta"] * -1.5
  moved = _loss_grads(net, changed, x, labels)
  assert not np.allclose(moved[0]["w"], base[0]["w"])
  assert not np.allclose(moved[1]["w"], base[1]["w"])
  np.testing.assert_array_equal(moved[2]["w"], base[2]["w"])  # the top layer's own update is local
  np.testing.assert_array_equal(base[0]["theta"], 0.0)  # Theta_0 never changes (xi_0 = 0)


def _objective(net):
  return Classification(lambda params, state, x, train: (net.apply(params, x), state), SMOOTHING)


@pytest.mark.parametrize(
  "method,theta_moves",
  [("dll", True), ("dll_fa", False), ("fa", False), ("bp", False)],
)
def test_only_dll_updates_theta(method, theta_moves):
  rule = LearningRule(method)
  net = mlp([16, 8, 6, 5], rule)
  tx, schedule = build_feedback_optimizer(
    FeedbackAdamSettings(lr=1e-2), 10, learns_theta=rule.learns_theta, plain_sgd=rule.plain_sgd
  )
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = create_state(lambda rng: {"params": net.init(rng)}, no_frozen_state, tx, 0, replicated)
  step = jax.jit(make_train_step(_objective(net), tx, schedule))
  rng = np.random.RandomState(0)
  new = state
  for _ in range(3):
    batch = {
      "inputs": rng.rand(8, 16).astype(np.float32),
      "targets": rng.randint(0, 5, size=8).astype(np.int32),
    }
    new, _ = step(new, batch)
  for layer, (before, after) in enumerate(zip(state.params, new.params)):
    assert not np.allclose(before["w"], after["w"])
    moved = not np.array_equal(before["theta"], after["theta"])
    assert moved == (theta_moves and layer > 0), (method, layer)


def test_options_reject_unknown_values():
  with pytest.raises(ValueError, match="unknown DLL form 'middle'"):
    DLLOptions(form="middle")
  with pytest.raises(ValueError, match="theta_sign must be"):
    LearningRule("dll", theta_sign=0.5)
  with pytest.raises(ValueError, match="unknown method 'pc'"):
    LearningRule("pc")
  with pytest.raises(ValueError, match="rule.feedback_scale applies to fa, fa_ref, dll_fa only"):
    LearningRule("dll", feedback_scale=2.0)
  with pytest.raises(ValueError, match="rule.feedback_scale must be positive"):
    LearningRule("fa", feedback_scale=0.0)


def test_feedback_matrices_of_fa_and_fa_ref():
  """fa at scale 1 keeps the Theta every rule draws; feedback_scale multiplies it (fa, dll_fa);
  fa_ref's Theta is the draw's signs times feedback_scale / sqrt(fan_out); W is the same for
  all."""
  rng = jax.random.PRNGKey(0)
  init = lambda rule: mlp([16, 12, 5], rule).init(rng)
  drawn = init(LearningRule("dll"))
  fa, fa_scaled = (init(LearningRule("fa", feedback_scale=s)) for s in (1.0, 3.0))
  ref, ref_scaled = init(LearningRule("fa_ref")), init(LearningRule("fa_ref", feedback_scale=2.0))
  frozen_scaled = init(LearningRule("dll_fa", feedback_scale=0.5))
  for d, a, a3, r, r2, f in zip(drawn, fa, fa_scaled, ref, ref_scaled, frozen_scaled):
    np.testing.assert_array_equal(a["theta"], d["theta"])
    np.testing.assert_allclose(a3["theta"], 3.0 * d["theta"], rtol=1e-6)
    np.testing.assert_allclose(f["theta"], 0.5 * d["theta"], rtol=1e-6)
    np.testing.assert_allclose(np.abs(r["theta"]), 1 / np.sqrt(d["theta"].shape[1]), rtol=1e-6)
    np.testing.assert_array_equal(np.sign(r["theta"]), np.sign(d["theta"]))
    np.testing.assert_allclose(r2["theta"], 2.0 * r["theta"], rtol=1e-6)
    assert 0.3 < np.mean(r["theta"] > 0) < 0.7  # random signs, not all one way
    for tree in (a, a3, r):
      np.testing.assert_array_equal(tree["w"], d["w"])
  # A conv's Theta sends each input pixel kh * kw * out errors; the RNN's the out units'.
  conv = cnn((4, 4, 1), (3, 2), ("max", "avg"), (6,), 5, LearningRule("fa_ref")).init(rng)
  np.testing.assert_allclose(np.abs(conv["conv"][1]["theta"]), 1 / np.sqrt(3 * 3 * 2), rtol=1e-6)
  ref = recurrent(5, 6, LearningRule("fa_ref")).init(rng)
  np.testing.assert_allclose(np.abs(ref["theta_y"]), 1 / np.sqrt(5), rtol=1e-6)
  np.testing.assert_allclose(np.abs(ref["theta_h"]), 1 / np.sqrt(6), rtol=1e-6)


def test_plain_sgd_steps_are_minus_lr_times_the_update():
  """fa_ref's optimizer does not adapt: each step is -schedule(step) * cotangent, where Adam's
  first step would be about -lr * sign(cotangent); Theta stays put."""
  tx, schedule = build_feedback_optimizer(
    FeedbackAdamSettings(lr=0.3), 4, learns_theta=False, plain_sgd=True
  )
  rng = np.random.RandomState(0)
  normal = lambda: rng.randn(3, 2).astype(np.float32)
  params = [{"w": normal(), "theta": normal()}]
  state = tx.init(params)
  for step in range(2):
    magnitudes = (10.0 ** rng.randint(-2, 3, (3, 2))).astype(np.float32)
    grads = [{"w": normal() * magnitudes, "theta": normal()}]
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[0]["w"], -schedule(step) * grads[0]["w"], rtol=1e-6)
    np.testing.assert_array_equal(updates[0]["theta"], 0.0)
  assert schedule(1) == pytest.approx(0.3 * 3 / 4)  # the same linear decay as Adam's


def test_named_layers_pair_each_w_with_the_theta_that_stands_in_for_it():
  rule = LearningRule("dll")
  params = mlp([16, 8, 6, 5], rule).init(jax.random.PRNGKey(0))
  named = mlp([16, 8, 6, 5], rule).layers(params)
  assert list(named) == ["layer0", "layer1", "layer2"]
  assert named["layer0"][1] is None  # the first layer sends no error down
  assert named["layer2"][0] is params[2]["w"] and named["layer2"][1] is params[2]["theta"]
  net = cnn((4, 4, 1), (3, 2), ("max", "avg"), (6,), 5, rule)
  named = net.layers(net.init(jax.random.PRNGKey(0)))
  assert list(named) == ["conv0", "conv1", "dense0", "dense1"]
  assert [theta is None for _, theta in named.values()] == [True, False, False, False]
  net = recurrent(5, 6, rule)
  params = net.init(jax.random.PRNGKey(0))
  named = net.layers(params)
  assert list(named) == ["input", "recurrent", "readout"]
  assert named["input"][1] is None
  assert named["recurrent"][1] is params["theta_h"] and named["readout"][0] is params["w_y"]


def test_net_config_reads_the_model_section():
  section = ml_collections.ConfigDict(
    dict(kind="cnn", channels=[3, 2], pools=["max", "avg"], hidden=[6])
  )
  cfg = NetConfig.from_config(section)
  assert cfg == NetConfig(kind="cnn", hidden=(6,), channels=(3, 2), pools=("max", "avg"))
  hash(cfg)  # lists from config.json become tuples
  net = build_net(section, LearningRule("bp"), (4, 4, 1), 5)
  assert net.apply(net.init(jax.random.PRNGKey(0)), jnp.zeros((2, 4, 4, 1))).shape == (2, 5)
  assert NetConfig.from_config(ml_collections.ConfigDict(dict(kind="rnn", hidden=8))).pools == ()


@pytest.mark.parametrize(
  "section,error,message",
  [
    (
      dict(kind="mlp", hidden=(8,), hiden=(4,)),
      ConfigError,
      r"unknown config key 'model\.hiden' \(did you mean 'model\.hidden'\?\)",
    ),
    (dict(kind="mlp"), ConfigError, "config section 'model' needs model.hidden"),
    (dict(kind="gru", hidden=8), ValueError, "unknown model.kind 'gru'"),
    (
      dict(kind="cnn", hidden=(8,), channels=(3,), pools=("max", "avg")),
      ValueError,
      "one entry per model.channels",
    ),
    (
      dict(kind="cnn", hidden=(8,), channels=(3,), pools=("min",)),
      ValueError,
      "model.pools entries",
    ),
    (dict(kind="rnn", hidden=(8,)), ValueError, "is one width"),
    (dict(kind="mlp", hidden=8), ValueError, "is a sequence of widths"),
  ],
)
def test_net_config_rejects_bad_sections(section, error, message):
  with pytest.raises(error, match=message):
    NetConfig.from_config(ml_collections.ConfigDict(section)).validate()
