"""Picks the JAX platform before jax is imported, so libtpu stays silent on machines without TPUs.

With libtpu installed (the `tpu` extra, needed for ahead-of-time TPU compiles) `import jax` probes
for TPU hardware and prints initialization errors when there is none. Unless the user has set
JAX_PLATFORMS, we set it from the hardware actually present.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys


def has_tpu_hardware() -> bool:
  """TPU VMs expose /dev/accel* (v2-v4, v5p) or /dev/vfio/* (v5e, v6e) devices."""
  return bool(glob.glob("/dev/accel*") or [p for p in glob.glob("/dev/vfio/*") if p[-1].isdigit()])


def has_cuda_plugin() -> bool:
  return any(
    importlib.util.find_spec(name) is not None
    for name in ("jax_cuda12_plugin", "jax_cuda13_plugin")
  )


def configure_platform() -> None:
  """Sets JAX_PLATFORMS when unset: TPU hardware -> leave to jax; else cuda (if installed), cpu."""
  if "JAX_PLATFORMS" in os.environ or has_tpu_hardware():
    return
  platforms = "cuda,cpu" if has_cuda_plugin() else "cpu"
  os.environ["JAX_PLATFORMS"] = platforms
  if "jax" in sys.modules:  # imported before jaxlab: its config already read the environment
    sys.modules["jax"].config.update("jax_platforms", platforms)
