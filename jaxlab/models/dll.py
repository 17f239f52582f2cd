"""Dendritic Localized Learning (DLL, arXiv 2501.09976) layers as custom VJPs.

Each layer's backward rule returns DLL quantities instead of gradients, so `jax.grad` of the task
loss yields every layer's local update in one top-down sweep (docs/dll.md). Row-vector
convention: u is (B, in), W and Theta are (in, out); a conv layer uses the same rules with its
convolution in place of the matmul.

Inner form (the paper's, the default): v = f(L(u, W)). Given v's cotangent g = -xi_out:
  delta = xi_out * f'(L(u, W));  xi_in = clip(L^T(delta; Theta))  (Theta, never W, carries
  the error down);  dW = clip(scale * L_W^T(u; delta));
  dTheta = sign * clip(scale * L_W^T(xi_in; delta))
Outer form (the reference code's): v = L(f(u), W), the layer's output is linear, so:
  xi_in = clip(L^T(xi_out; Theta) * f'(u));  dW = clip(scale * L_W^T(f(u); xi_out));
  dTheta = sign * clip(scale * L_W^T(xi_in * f'(u); xi_out))
L^T is the transpose of L in its input (delta Theta^T for a matmul, a transposed convolution for
a conv) and L_W^T its transpose in the kernel (u^T delta). Updates are summed over the batch.

Sign convention: DLL's updates are ascent steps (W += lr * dW). optax minimizes (params -= lr *
update), so the cotangents returned are -xi_in, -dW and -dTheta. With Theta = W, scale 1 and no
clipping, the inner form's cotangents are exactly backprop's gradients.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

LinearMap = Callable[[jax.Array, jax.Array], jax.Array]
FORMS = ("inner", "outer")
ACTIVATIONS = ("tanh", "identity")


@dataclasses.dataclass(frozen=True)
class DLLOptions:
  """Static settings of one DLL layer (hashable: they select the backward rule).

  form: "inner" f(L(u, W)) or "outer" L(f(u), W). theta_sign: +1 is the reference MLP/CNN code's
  Theta update (the one that reproduced its tables), -1 the paper's Eq. 9 and its RNN code.
  freeze_theta: Theta gets no update (DLL-FA, and FA where Theta is the fixed feedback matrix).
  is_first: the input is data, so no error is sent down (xi_0 = 0) and Theta never changes.
  clip: bound on the error sent down and on dW, dTheta (inf: none). scale: factor on dW, dTheta.
  """

  form: str = "inner"
  activation: str = "tanh"
  theta_sign: float = 1.0
  freeze_theta: bool = False
  is_first: bool = False
  clip: float = 50.0
  scale: float = 2.0

  def __post_init__(self):
    if self.form not in FORMS:
      raise ValueError(f"unknown DLL form {self.form!r}; choose one of {', '.join(FORMS)}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
      )
    if self.theta_sign not in (1.0, -1.0):
      raise ValueError(f"theta_sign must be +1 or -1, got {self.theta_sign}")


def activate(x: jax.Array, activation: str) -> jax.Array:
  return jnp.tanh(x) if activation == "tanh" else x


def activation_derivative(x: jax.Array, activation: str) -> jax.Array:
  return 1.0 - jnp.tanh(x) ** 2 if activation == "tanh" else jnp.ones_like(x)


def forward(linear: LinearMap, u: jax.Array, w: jax.Array, form: str, activation: str) -> jax.Array:
  """The layer's function, shared by the DLL rule and by plain autodiff (backprop)."""
  if form == "inner":
    return activate(linear(u, w), activation)
  return linear(activate(u, activation), w)


def matmul(u: jax.Array, w: jax.Array) -> jax.Array:
  return u @ w


@dataclasses.dataclass(frozen=True)
class Conv2D:
  """NHWC input, HWIO kernel; a hashable linear map so it can select a custom-VJP rule."""

  strides: tuple[int, int] = (1, 1)
  padding: str = "SAME"

  def __call__(self, u: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
      u, w, self.strides, self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def clip_values(x: jax.Array, bound: float) -> jax.Array:
  """x clipped to [-bound, bound]; bound = inf leaves x as it is."""
  return x if math.isinf(bound) else jnp.clip(x, -bound, bound)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def _dll_layer(
  linear: LinearMap, u: jax.Array, w: jax.Array, theta: jax.Array, options: DLLOptions
) -> jax.Array:
  del theta  # only the backward rule reads Theta
  return forward(linear, u, w, options.form, options.activation)


def _dll_layer_fwd(linear, u, w, theta, options):
  if options.form == "inner":
    pre_activation = linear(u, w)
    return activate(pre_activation, options.activation), (u, pre_activation, theta)
  return linear(activate(u, options.activation), w), (u, None, theta)


def _dll_layer_bwd(linear, options, residuals, g):
  u, pre_activation, theta = residuals
  f = options.activation
  xi_out = -g

  def kernel_transpose(inputs, cotangent):  # L_W^T(inputs; cotangent), e.g. inputs^T cotangent
    return jax.linear_transpose(lambda k: linear(inputs, k), theta)(cotangent)[0]

  def input_transpose(cotangent):  # L^T(cotangent; Theta), e.g. cotangent Theta^T
    return jax.linear_transpose(lambda x: linear(x, theta), u)(cotangent)[0]

  if options.form == "inner":
    delta = xi_out * activation_derivative(pre_activation, f)
    presynaptic = u
    xi_in = clip_values(input_transpose(delta), options.clip)
    theta_presynaptic = xi_in
  else:
    delta = xi_out
    presynaptic = activate(u, f)
    xi_in = clip_values(input_transpose(delta) * activation_derivative(u, f), options.clip)
    theta_presynaptic = xi_in * activation_derivative(u, f)
  d_w = clip_values(options.scale * kernel_transpose(presynaptic, delta), options.clip)
  if options.freeze_theta or options.is_first:
    d_theta = jnp.zeros_like(theta)
  else:
    d_theta = options.theta_sign * clip_values(
      options.scale * kernel_transpose(theta_presynaptic, delta), options.clip
    )
  if options.is_first:
    xi_in = jnp.zeros_like(u)
  return -xi_in, -d_w, -d_theta


_dll_layer.defvjp(_dll_layer_fwd, _dll_layer_bwd)


def dll_dense(u: jax.Array, w: jax.Array, theta: jax.Array, options: DLLOptions) -> jax.Array:
  """Dense DLL layer, u (B, in) @ W (in, out); cotangents are the DLL updates (see module doc)."""
  return _dll_layer(matmul, u, w, theta, options)


def dll_conv(
  u: jax.Array, w: jax.Array, theta: jax.Array, options: DLLOptions, conv: Conv2D = Conv2D()
) -> jax.Array:
  """Conv DLL layer, u NHWC, W and Theta HWIO; the error goes down through Theta's transposed
  convolution."""
  return _dll_layer(conv, u, w, theta, options)


METHODS = ("bp", "fa", "dll", "dll_fa", "fa_ref")
FEEDBACK_ALIGNMENT = ("fa", "fa_ref")
# Rules whose feedback matrix is drawn once and never learned: rule.feedback_scale tunes its size.
FIXED_FEEDBACK = (*FEEDBACK_ALIGNMENT, "dll_fa")


@dataclasses.dataclass(frozen=True)
class LearningRule:
  """How a whole network learns: backprop, feedback alignment, DLL, or DLL with Theta frozen.

  FA is the DLL machinery with a fixed random feedback matrix (Theta, never updated), no scaling
  and no clipping: the weight update is then backprop's gradient with B = Theta in place of W.
  fa_ref is the DLL paper's reference FA: the same rule with a random sign matrix as Theta and
  plain SGD instead of Adam (`feedback_matrix`, `plain_sgd`). feedback_scale multiplies the
  fixed feedback matrix (fa, fa_ref, dll_fa; 1 keeps Theta as drawn), the knob those rules get
  where DLL gets Theta's sign and rate. Adam divides a constant factor on a tensor's updates out,
  so in a feed-forward net it changes little under Adam; through time in the RNN, and for
  fa_ref's plain SGD, it sets how fast the error signal grows or fades.
  """

  method: str = "dll"
  form: str = "inner"
  theta_sign: float = 1.0
  clip: float = 50.0
  scale: float = 2.0
  feedback_scale: float = 1.0

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
    DLLOptions(self.form, theta_sign=self.theta_sign)  # checks form and sign
    if not self.feedback_scale > 0:
      raise ValueError(f"rule.feedback_scale must be positive, got {self.feedback_scale}")
    if self.feedback_scale != 1.0 and self.method not in FIXED_FEEDBACK:
      raise ValueError(
        f"rule.feedback_scale applies to {', '.join(FIXED_FEEDBACK)} only; method "
        f"{self.method!r} needs 1.0, got {self.feedback_scale}"
      )

  @property
  def learns_theta(self) -> bool:
    return self.method == "dll"

  @property
  def plain_sgd(self) -> bool:
    """fa_ref trains with plain SGD, as the paper's reference FA; every other rule with Adam."""
    return self.method == "fa_ref"

  def feedback_matrix(self, normal: jax.Array, std: float) -> jax.Array:
    """Initial Theta (W's shape, (..., in, out)) from a standard normal draw `normal`.

    std * normal for every rule, times feedback_scale for fa and dll_fa. fa_ref: the signs of
    `normal` times feedback_scale / sqrt(fan_out), fan_out = normal.size / in (out for a dense
    layer, kh*kw*out for a conv): each entry of the error sent down sums fan_out terms of random
    sign, so at scale 1 it keeps the size of the error it receives, which plain SGD (unlike Adam)
    needs in a deep net.
    """
    if self.method == "fa_ref":
      fan_out = normal.size // normal.shape[-2]
      signs = jnp.where(normal < 0, -1.0, 1.0).astype(normal.dtype)
      return (self.feedback_scale / math.sqrt(fan_out)) * signs
    if self.method in FIXED_FEEDBACK:
      return self.feedback_scale * std * normal
    return std * normal

  def options(self, activation: str, is_first: bool) -> DLLOptions | None:
    """The layer's DLL options, or None for plain autodiff (backprop)."""
    if self.method == "bp":
      return None
    if self.method in FEEDBACK_ALIGNMENT:
      return DLLOptions(
        self.form, activation, freeze_theta=True, is_first=is_first, clip=math.inf, scale=1.0
      )
    return DLLOptions(
      self.form,
      activation,
      self.theta_sign,
      freeze_theta=not self.learns_theta,
      is_first=is_first,
      clip=self.clip,
      scale=self.scale,
    )


def layer(
  rule: LearningRule,
  params: dict[str, jax.Array],
  u: jax.Array,
  activation: str,
  is_first: bool,
  linear: LinearMap = matmul,
) -> jax.Array:
  """One dense (or, with `linear=Conv2D(...)`, conv) layer {"w", "theta"} learning by `rule`."""
  options = rule.options(activation, is_first)
  if options is None:
    return forward(linear, u, params["w"], rule.form, activation)
  return _dll_layer(linear, u, params["w"], params["theta"], options)
