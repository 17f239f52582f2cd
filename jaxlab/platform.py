"""Picks the JAX platform before jax is imported, so libtpu stays silent on machines without TPUs.

With libtpu installed (the `tpu` extra, needed for ahead-of-time TPU compiles) `import jax` probes
for TPU hardware and prints initialization errors when there is none. Unless the user has set
JAX_PLATFORMS, we set it from the hardware actually present.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import sys

# XLA:CPU routes matmuls and reductions through YNNPACK by default. For the skinny matmuls of
# batched decoding and the softmax reductions over a KV cache, its per-call weight packing costs
# more than the work (jaxlab.bench sample, tiny preset, 2-core Zen 5: 218 -> 160 ms for 128
# tokens); Eigen's kernels take them back with no loss to the train step. The flag exists in
# the jaxlib versions named here; unknown XLA flags abort the process, so others are left alone.
CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-reduce,-dot"
CPU_FLAGS_JAXLIB = ("0.10.",)


def has_tpu_hardware() -> bool:
  """TPU VMs expose /dev/accel* (v2-v4, v5p) or /dev/vfio/* (v5e, v6e) devices."""
  return bool(glob.glob("/dev/accel*") or [p for p in glob.glob("/dev/vfio/*") if p[-1].isdigit()])


def has_cuda_plugin() -> bool:
  return any(importlib.util.find_spec(name) is not None
             for name in ("jax_cuda12_plugin", "jax_cuda13_plugin"))


def configure_cpu_flags() -> None:
  """Appends CPU_XLA_FLAGS to XLA_FLAGS unless the user's XLA_FLAGS already sets that flag or
  jaxlib is a version it was not measured with. Must run before jax creates its CPU backend."""
  flags = os.environ.get("XLA_FLAGS", "")
  name = CPU_XLA_FLAGS.split("=")[0]
  try:
    jaxlib_version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return
  if name not in flags and jaxlib_version.startswith(CPU_FLAGS_JAXLIB):
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAGS}".strip()


def configure_platform() -> None:
  """Sets JAX_PLATFORMS when unset: TPU hardware -> leave to jax; else cuda (if installed), cpu."""
  if "JAX_PLATFORMS" in os.environ or has_tpu_hardware():
    return
  platforms = "cuda,cpu" if has_cuda_plugin() else "cpu"
  os.environ["JAX_PLATFORMS"] = platforms
  if "jax" in sys.modules:  # imported before jaxlab: its config already read the environment
    sys.modules["jax"].config.update("jax_platforms", platforms)
