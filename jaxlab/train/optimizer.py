"""optax optimizer from config: AdamW, warm-up then cosine/linear decay, clipping, decay mask."""

from __future__ import annotations

import re
from typing import Any

import jax
import ml_collections
import optax


def learning_rate_schedule(opt_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `lr`, then cosine or linear decay to `lr * end_lr_fraction`."""
  warmup = min(int(opt_cfg.warmup_steps), total_steps)
  peak, end = float(opt_cfg.lr), float(opt_cfg.lr) * float(opt_cfg.end_lr_fraction)
  decay_steps = max(total_steps - warmup, 1)
  if opt_cfg.decay == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=float(opt_cfg.end_lr_fraction))
  elif opt_cfg.decay == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif opt_cfg.decay == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"unknown optimizer.decay {opt_cfg.decay!r}; choose cosine, linear or constant")
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


def build_optimizer(opt_cfg: ml_collections.ConfigDict,
                    total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with global-norm clipping; returns the transformation and its schedule."""
  if opt_cfg.name != "adamw":
    raise ValueError(f"unknown optimizer.name {opt_cfg.name!r}; only 'adamw' is available")
  schedule = learning_rate_schedule(opt_cfg, total_steps)
  patterns = tuple(opt_cfg.no_decay_patterns)
  tx = optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                   weight_decay=opt_cfg.weight_decay,
                   mask=lambda params: weight_decay_mask(params, patterns))
  if opt_cfg.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt_cfg.clip_norm), tx)
  return tx, schedule
