"""Compile checks of every kernel from a CPU-only machine.

`aot_tpu_check`: each kernel is lowered with target="tpu" (its Mosaic kernels, not the
reference) for one compile-only device of a TPU topology and compiled by libtpu: a kernel that
Mosaic cannot lower (block shapes, layouts, unsupported ops) fails here rather than on the pod.
The topology mesh is installed with `jax.set_mesh` while lowering because Pallas asks the current
mesh's device, not the CPU default device, which TPU generation it targets.
`gpu_lowering_check`: the same with target="gpu", lowered for CUDA (Pallas -> Triton IR); no
GPU compiler runs here, so this catches Triton lowering errors but not PTX-level ones.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab.kernels.attention import flash_attention
from jaxlab.kernels.lif import lif_multistep
from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from jaxlab.kernels.xnor_attention import xnor_attention
from jaxlab.parallel.topology import topology_devices

_MIB = 2**20


def _attention(q, k, v, pos, seg, *, target):
  return flash_attention(
    q, k, v, q_index=pos, kv_index=pos, q_segment_ids=seg, kv_segment_ids=seg, target=target
  )


def _linear_ce(hidden, head, targets, weights, *, target):
  loss, weight_sum, logprobs = fused_linear_cross_entropy(
    hidden, head, targets, weights, target=target
  )
  return loss / weight_sum + 0.1 * logprobs.sum()


def _lif(x, *, target):
  return lif_multistep(x, target=target)


def _xnor(q, k, v, scale, codes, *, target):
  return xnor_attention(q, k, v, scale, codes, target=target)


def _grad(fn: Callable, argnums: tuple[int, ...]) -> Callable:
  """Gradient of sum(fn(...)): compiles the forward and backward kernels together."""
  return jax.grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32)), argnums=argnums)


Case = tuple[str, Callable, tuple[tuple[tuple[int, ...], jnp.dtype], ...]]


def kernel_cases(target: str) -> list[Case]:
  """(name, function, argument shapes and dtypes) for every kernel, forward and backward, at
  representative sizes: LLaMA-style bf16 attention and loss, float32 spiking layers."""
  bf16, f32, i32 = jnp.bfloat16, jnp.float32, jnp.int32
  attention = (
    ((2, 2048, 8, 128), bf16),
    ((2, 2048, 2, 128), bf16),
    ((2, 2048, 2, 128), bf16),
    ((2, 2048), i32),
    ((2, 2048), i32),
  )
  linear_ce = (((4096, 2048), bf16), ((2048, 32768), bf16), ((4096,), i32), ((4096,), f32))
  lif = (((4, 32, 64, 256), f32),)
  xnor = (((4, 32, 8, 196, 32), f32),) * 3 + (((), f32), ((196, 8), f32))
  attn, lce, lif_, xnor_ = (
    functools.partial(fn, target=target) for fn in (_attention, _linear_ce, _lif, _xnor)
  )
  return [
    ("flash_attention fwd", attn, attention),
    ("flash_attention bwd", _grad(attn, (0, 1, 2)), attention),
    ("linear_cross_entropy fwd", lce, linear_ce),
    ("linear_cross_entropy bwd", jax.grad(lce, (0, 1, 3)), linear_ce),
    ("lif_multistep fwd", lif_, lif),
    ("lif_multistep bwd", _grad(lif_, (0,)), lif),
    ("xnor_attention fwd", xnor_, xnor),
    ("xnor_attention bwd", _grad(xnor_, (0, 1, 2, 3)), xnor),
  ]


def _check(
  cases: list[Case], only: Sequence[str] | None, compile_one: Callable
) -> list[tuple[str, bool, str]]:
  """Runs `compile_one(fn, specs) -> detail` per case, catching and reporting each failure."""
  results = []
  for name, fn, specs in cases:
    if only is not None and name not in only:
      continue
    start = time.perf_counter()
    try:
      detail = compile_one(fn, specs)
      results.append((name, True, f"{time.perf_counter() - start:.1f} s{detail}"))
    except Exception as e:  # noqa: BLE001  (report every kernel, whatever failed)
      first = str(e).strip().splitlines()[0] if str(e).strip() else ""
      results.append((name, False, f"{type(e).__name__}: {first}"))
  return results


def aot_tpu_check(topology: str, only: Sequence[str] | None = None) -> list[tuple[str, bool, str]]:
  """Lowers and compiles every TPU kernel (or those named in `only`) for one device of
  `topology` (e.g. "v5e-8"). Returns (kernel, ok, detail): compile time and temp memory, or
  the error's first line."""
  mesh = Mesh(np.array(topology_devices(topology)[:1]), ("device",))
  replicated = NamedSharding(mesh, PartitionSpec())

  def compile_one(fn, specs):
    args = [jax.ShapeDtypeStruct(shape, dtype, sharding=replicated) for shape, dtype in specs]
    with jax.set_mesh(mesh):
      compiled = jax.jit(fn).lower(*args).compile()
    return f", temp {compiled.memory_analysis().temp_size_in_bytes / _MIB:.1f} MiB"

  return _check(kernel_cases("tpu"), only, compile_one)


def gpu_lowering_check(only: Sequence[str] | None = None) -> list[tuple[str, bool, str]]:
  """Lowers every GPU kernel (or those named in `only`) for CUDA, without compiling."""

  def lower_one(fn, specs):
    args = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs]
    jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    return ""

  return _check(kernel_cases("gpu"), only, lower_one)
