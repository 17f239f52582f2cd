"""MLP, CNN and RNN classifiers built from DLL layers, as (init, apply) pairs on plain pytrees.

Every layer owns {"w", "theta"} (the RNN {"w_x", "w_h", "w_y", "theta_h", "theta_y"}) whatever
the learning rule, so the same seed gives the same initial W to every rule; rules
that do not learn Theta (BP ignores it) leave it unchanged. No biases, as in the reference code.
Init follows the reference code: W ~ N(0, 0.05^2); Theta ~ N(0, 1) in dense layers and
N(0, 0.05^2) in conv layers and the RNN (fa scales it by rule.feedback_scale; fa_ref draws a sign
matrix instead, LearningRule.feedback_matrix).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from jaxlab.config import settings_from_section
from jaxlab.models.dll import Conv2D, LearningRule, layer
from jaxlab.models.dll_rnn import rnn

Params = Any
# layer name -> (W, the Theta that carries the error down in W's place, or None where none does)
NamedLayers = dict[str, tuple[jax.Array, jax.Array | None]]
W_STD = 0.05
DENSE_THETA_STD = 1.0
CONV_THETA_STD = 0.05
RNN_THETA_STD = 0.05
MODEL_KINDS = ("mlp", "cnn", "rnn")
POOLS = ("max", "avg", "none")


@dataclasses.dataclass(frozen=True)
class NetConfig:
  """The `model` section of a DLL config. `hidden` is the dense hidden widths (mlp, cnn) or the
  recurrent width (rnn); `channels` and `pools` (one per conv) are the cnn's. Sequences are
  stored as tuples (config.json gives lists), so the config stays hashable."""

  kind: str
  hidden: int | tuple[int, ...]
  channels: tuple[int, ...] = ()
  pools: tuple[str, ...] = ()

  def __post_init__(self):
    for name in ("hidden", "channels", "pools"):
      value = getattr(self, name)
      if isinstance(value, list):
        object.__setattr__(self, name, tuple(value))

  @classmethod
  def from_config(cls, model_cfg: ml_collections.ConfigDict) -> NetConfig:
    """Reads the `model` section: unknown keys and a missing kind or hidden are a ConfigError."""
    return settings_from_section(cls, model_cfg, "model")

  def validate(self) -> None:
    """Raises ValueError (one line) for an unknown kind or pool, or pools that do not fit."""
    if self.kind not in MODEL_KINDS:
      raise ValueError(f"unknown model.kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if self.kind == "rnn" and not isinstance(self.hidden, int):
      raise ValueError(f"model.hidden for model.kind='rnn' is one width, got {self.hidden!r}")
    if self.kind != "rnn" and isinstance(self.hidden, int):
      raise ValueError(
        f"model.hidden for model.kind={self.kind!r} is a sequence of widths, got {self.hidden!r}"
      )
    if self.kind == "cnn":
      if not self.channels:
        raise ValueError("model.kind='cnn' needs model.channels")
      if len(self.pools) != len(self.channels):
        raise ValueError("model.pools needs one entry per model.channels entry")
      if any(p not in POOLS for p in self.pools):
        raise ValueError(f"model.pools entries must be one of {', '.join(POOLS)}")


@dataclasses.dataclass(frozen=True)
class Net:
  """init(rng) -> params; apply(params, inputs) -> logits (last axis = classes); layers(tree)
  -> NamedLayers of a tree shaped like params (parameters or their cotangents), in input-to-output
  order: mlp layer{i}; cnn conv{i}, dense{i}; rnn input (W_x), recurrent (W_h, Theta_h), readout
  (W_y, Theta_y). Theta is None for the first layer (its input is data, no error goes down)."""

  init: Callable[[jax.Array], Params]
  apply: Callable[[Params, jax.Array], jax.Array]
  layers: Callable[[Params], NamedLayers]


def _normals(rng: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
  """Standard normal arrays of `shapes` cut from one draw: one random-bits kernel to compile
  instead of one per tensor (each takes XLA:CPU most of a second)."""
  sizes = [math.prod(shape) for shape in shapes]
  flat = jax.random.normal(rng, (sum(sizes),))
  offsets = [sum(sizes[:i]) for i in range(len(sizes))]
  return [flat[o : o + n].reshape(shape) for o, n, shape in zip(offsets, sizes, shapes)]


def _layers(
  rng: jax.Array, shapes: Sequence[tuple[int, ...]], theta_std: float, rule: LearningRule
) -> list[dict[str, jax.Array]]:
  """{"w", "theta"} per layer of `shapes`, W ~ N(0, W_STD^2) and Theta from the same draw as
  rule.feedback_matrix makes it (N(0, theta_std^2) but for fa's scale and fa_ref's signs)."""
  normals = _normals(rng, [*shapes, *shapes])
  return [
    {"w": W_STD * w, "theta": rule.feedback_matrix(theta, theta_std)}
    for w, theta in zip(normals[: len(shapes)], normals[len(shapes) :])
  ]


def _stack_layers(prefix: str, stack: Sequence[dict[str, jax.Array]], first: bool) -> NamedLayers:
  """{prefix}{i} -> (w, theta) for a list of dense or conv layers; with `first`, the first one
  sends no error down (its Theta is None)."""
  return {
    f"{prefix}{i}": (p["w"], None if first and i == 0 else p["theta"]) for i, p in enumerate(stack)
  }


def _dense_activations(num_layers: int, form: str) -> list[str]:
  """Inner form: f(uW) with tanh hidden layers and linear logits. Outer form: f(u)W with the
  identity on the raw input, so both forms compute the same function."""
  if form == "inner":
    return ["tanh"] * (num_layers - 1) + ["identity"]
  return ["identity"] + ["tanh"] * (num_layers - 1)


def mlp(widths: Sequence[int], rule: LearningRule) -> Net:
  """Dense net with layer sizes `widths` (input first, classes last); inputs are flattened."""
  shapes = list(zip(widths[:-1], widths[1:]))
  activations = _dense_activations(len(shapes), rule.form)

  def init(rng):
    return _layers(rng, shapes, DENSE_THETA_STD, rule)

  def apply(params, x):
    u = x.reshape(x.shape[0], -1)
    for i, (p, activation) in enumerate(zip(params, activations)):
      u = layer(rule, p, u, activation, is_first=i == 0)
    return u

  return Net(init, apply, lambda tree: _stack_layers("layer", tree, first=True))


def _pool(x: jax.Array, kind: str) -> jax.Array:
  if kind == "max":
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  if kind == "avg":
    return nn.avg_pool(x, (2, 2), strides=(2, 2))
  return x


def cnn(
  input_shape: Sequence[int],
  channels: Sequence[int],
  pools: Sequence[str],
  hidden: Sequence[int],
  num_classes: int,
  rule: LearningRule,
  kernel_size: int = 3,
) -> Net:
  """Inner-form tanh convs (SAME padding), each followed by a 2x2 pool ("max", "avg", "none";
  pooling keeps its ordinary VJP), then tanh dense layers and linear logits."""
  height, width, in_channels = input_shape
  conv_shapes = [
    (kernel_size, kernel_size, c_in, c_out)
    for c_in, c_out in zip([in_channels, *channels[:-1]], channels)
  ]
  for kind in pools:
    if kind != "none":
      height, width = height // 2, width // 2
  dense_widths = [height * width * channels[-1], *hidden, num_classes]
  dense_shapes = list(zip(dense_widths[:-1], dense_widths[1:]))
  conv = Conv2D()

  def init(rng):
    conv_rng, dense_rng = jax.random.split(rng)
    return {
      "conv": _layers(conv_rng, conv_shapes, CONV_THETA_STD, rule),
      "dense": _layers(dense_rng, dense_shapes, DENSE_THETA_STD, rule),
    }

  def apply(params, x):
    u = x
    for i, (p, kind) in enumerate(zip(params["conv"], pools)):
      u = _pool(layer(rule, p, u, "tanh", is_first=i == 0, linear=conv), kind)
    u = u.reshape(u.shape[0], -1)
    activations = _dense_activations(len(dense_shapes), "inner")
    for p, activation in zip(params["dense"], activations):
      u = layer(rule, p, u, activation, is_first=False)
    return u

  def layers(tree):
    return {
      **_stack_layers("conv", tree["conv"], first=True),
      **_stack_layers("dense", tree["dense"], first=False),
    }

  return Net(init, apply, layers)


def recurrent(vocab_size: int, hidden: int, rule: LearningRule) -> Net:
  """Character RNN: one-hot tokens [B, T] -> logits [B, T, vocab_size]."""

  def init(rng):
    shapes = {
      "w_x": (vocab_size, hidden),
      "w_h": (hidden, hidden),
      "w_y": (hidden, vocab_size),
      "theta_h": (hidden, hidden),
      "theta_y": (hidden, vocab_size),
    }
    normals = _normals(rng, list(shapes.values()))
    return {
      name: rule.feedback_matrix(value, RNN_THETA_STD)
      if name.startswith("theta")
      else W_STD * value
      for name, value in zip(shapes, normals)
    }

  def apply(params, tokens):
    return rnn(rule, params, jax.nn.one_hot(tokens, vocab_size))

  def layers(tree):
    return {
      "input": (tree["w_x"], None),
      "recurrent": (tree["w_h"], tree["theta_h"]),
      "readout": (tree["w_y"], tree["theta_y"]),
    }

  return Net(init, apply, layers)


def build_net(
  model_cfg: NetConfig | ml_collections.ConfigDict,
  rule: LearningRule,
  input_shape: Sequence[int],
  num_classes: int,
) -> Net:
  """The net named by `model_cfg.kind` for inputs of `input_shape` (one example). A ConfigDict
  `model` section is read with NetConfig.from_config (unknown keys are a ConfigError)."""
  if not isinstance(model_cfg, NetConfig):
    model_cfg = NetConfig.from_config(model_cfg)
  model_cfg.validate()
  if model_cfg.kind == "mlp":
    return mlp([math.prod(input_shape), *model_cfg.hidden, num_classes], rule)
  if model_cfg.kind == "cnn":
    return cnn(
      input_shape, model_cfg.channels, model_cfg.pools, model_cfg.hidden, num_classes, rule
    )
  return recurrent(num_classes, model_cfg.hidden, rule)
