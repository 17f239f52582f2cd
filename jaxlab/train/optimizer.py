"""optax optimizers from typed settings: AdamW with warm-up then decay, clipping and a decay mask
(every study but DLL), and DLL's Adam (or plain SGD) with a separate rate for feedback matrices."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import optax

DECAYS = ("cosine", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class AdamWSettings:
  """The `optimizer` section of every study but DLL."""

  name: str = "adamw"
  lr: float = 3e-4
  warmup_steps: int = 100
  decay: str = "cosine"  # cosine | linear | constant
  end_lr_fraction: float = 0.1
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.1
  clip_norm: float = 1.0  # 0: no clipping
  no_decay_patterns: tuple[str, ...] = ("norm",)

  def validate(self) -> None:
    """Raises ValueError (one line) for an unknown optimizer or decay, or a bad rate."""
    if self.name != "adamw":
      raise ValueError(f"unknown optimizer.name {self.name!r}; only 'adamw' is available")
    if self.decay not in DECAYS:
      raise ValueError(f"unknown optimizer.decay {self.decay!r}; choose {', '.join(DECAYS)}")
    if not self.lr > 0:
      raise ValueError(f"optimizer.lr must be positive, got {self.lr}")


def learning_rate_schedule(opt: AdamWSettings, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `lr`, then cosine or linear decay to `lr * end_lr_fraction`."""
  warmup = min(opt.warmup_steps, total_steps)
  peak, end = opt.lr, opt.lr * opt.end_lr_fraction
  decay_steps = max(total_steps - warmup, 1)
  if opt.decay == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt.end_lr_fraction)
  elif opt.decay == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  else:
    decay = optax.constant_schedule(peak)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def weight_decay_mask(params: Any, no_decay_patterns: tuple[str, ...]) -> Any:
  """True for parameters that get weight decay: those whose path matches no pattern.

  Path-based rather than rank-based because scanned layers give norm scales rank 2.
  """
  compiled = [re.compile(p) for p in no_decay_patterns]

  def decays(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    return not any(p.search(name) for p in compiled)

  return jax.tree_util.tree_map_with_path(decays, params)


def build_optimizer(
  opt: AdamWSettings, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with global-norm clipping; returns the transformation and its schedule."""
  opt.validate()
  schedule = learning_rate_schedule(opt, total_steps)
  patterns = tuple(opt.no_decay_patterns)
  tx = optax.adamw(
    schedule,
    b1=opt.b1,
    b2=opt.b2,
    eps=opt.eps,
    weight_decay=opt.weight_decay,
    mask=lambda params: weight_decay_mask(params, patterns),
  )
  if opt.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.clip_norm), tx)
  return tx, schedule


@dataclasses.dataclass(frozen=True)
class FeedbackAdamSettings:
  """The DLL study's `optimizer` section: Adam (plain SGD for fa_ref), linear decay to 0, Theta at
  a fraction of lr."""

  lr: float = 1e-3
  theta_lr_ratio: float = 0.1
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8


def feedback_param_labels(params: Any) -> Any:
  """ "theta" for feedback matrices (keys starting with theta), "w" for everything else."""

  def label(path, _):
    name = str(getattr(path[-1], "key", ""))
    return "theta" if name.startswith("theta") else "w"

  return jax.tree_util.tree_map_with_path(label, params)


def build_feedback_optimizer(
  opt: FeedbackAdamSettings, total_steps: int, learns_theta: bool, plain_sgd: bool = False
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with separate state per tensor and a linear decay to 0 over `total_steps`; Theta's
  peak rate is `lr * theta_lr_ratio`; Theta is left unchanged when the rule does not learn it.
  With `plain_sgd` (FA's reference form) the W tensors take plain SGD steps, -schedule * update,
  on the same schedule (b1, b2 and eps unused)."""
  if not opt.lr > 0:
    raise ValueError(f"optimizer.lr must be positive, got {opt.lr}")
  schedule = optax.linear_schedule(opt.lr, 0.0, total_steps)

  def adam(scale: float) -> optax.GradientTransformation:
    return optax.adam(lambda step: scale * schedule(step), b1=opt.b1, b2=opt.b2, eps=opt.eps)

  w = optax.sgd(schedule) if plain_sgd else adam(1.0)
  theta = adam(opt.theta_lr_ratio) if learns_theta else optax.set_to_zero()
  return optax.multi_transform({"w": w, "theta": theta}, feedback_param_labels), schedule
