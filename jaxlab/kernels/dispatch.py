"""Which implementation a kernel runs: the TPU (Mosaic) kernel, the GPU (Triton) kernel, or the
pure-jnp reference, optionally interpreted on CPU.

Whether a model uses a kernel at all is chosen by its config (`model.attention_impl`,
`model.loss_impl`, `model.neuron_impl`, ...); this module only picks the platform variant.
Targets: "auto" (default), "reference", "tpu", "gpu", "tpu-interpret", "gpu-interpret". "auto"
stages out all three with `lax.platform_dependent`, so the choice is made when the program is
lowered: an ahead-of-time compile for a TPU topology from a CPU machine gets the TPU kernel, a CPU
run gets the reference. The environment variable JAXLAB_KERNELS overrides "auto", for tests only
(they set it to "tpu-interpret" to run the Mosaic kernels in Pallas' interpreter on CPU).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TypeVar

import jax

ENV_VAR = "JAXLAB_KERNELS"
TARGETS = ("auto", "reference", "tpu", "gpu", "tpu-interpret", "gpu-interpret")

_T = TypeVar("_T")
_logger = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


def resolve_target(target: str | None) -> str:
  """The effective target: the argument, else $JAXLAB_KERNELS (for tests only), else "auto"."""
  target = target or os.environ.get(ENV_VAR) or "auto"
  if target not in TARGETS:
    raise ValueError(f"unknown kernel target {target!r}; choose from {', '.join(TARGETS)}")
  return target


def dispatch(
  kernel: str,
  target: str | None,
  *,
  tpu: Callable[..., _T],
  gpu: Callable[..., _T],
  reference: Callable[..., _T],
  default: Callable[..., _T] | None = None,
) -> Callable[..., _T]:
  """The implementation of `kernel` for `target`. `tpu` and `gpu` take a keyword
  `interpret: bool`; `default` (the reference unless given) serves other platforms under
  "auto", which logs once when the default backend is such a platform."""
  target = resolve_target(target)
  if target == "reference":
    return reference
  if target.startswith("tpu"):
    return functools.partial(tpu, interpret=target.endswith("interpret"))
  if target.startswith("gpu"):
    return functools.partial(gpu, interpret=target.endswith("interpret"))
  backend = jax.default_backend()
  if backend not in ("tpu", "gpu"):
    warn_once(
      kernel,
      f"the default backend is {backend}, so programs lowered for it run the "
      "jnp implementation (TPU/GPU lowerings get the Pallas kernels)",
    )
  return lambda *args: jax.lax.platform_dependent(
    *args,
    tpu=functools.partial(tpu, interpret=False),
    cuda=functools.partial(gpu, interpret=False),
    default=default or reference,
  )


def warn_once(kernel: str, reason: str) -> None:
  """Logs, once per (kernel, reason), that a kernel does not run its Pallas version and why."""
  if (kernel, reason) not in _warned:
    _warned.add((kernel, reason))
    _logger.warning("%s: %s", kernel, reason)
