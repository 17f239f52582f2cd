"""Kernel benchmarks: every kernel against its pure-jnp reference on the current device.

For each kernel and pass (forward, forward+backward) both implementations are compiled once;
the row reports the median wall time over repeats after warm-up (block_until_ready) and the
compiled program's temp memory from XLA's memory analysis (CPU has no runtime memory stats).
On TPU/GPU "kernel" is the Pallas kernel. On CPU no Pallas kernel runs: "kernel" is what
attention_impl="pallas" etc. dispatch to there (the jnp reference inside the kernel's
custom_vjp, or for the loss the vocabulary-chunked XLA loop), which the `ran` column says.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxlab.bench.timing import markdown_table, median_seconds
from jaxlab.kernels.attention import flash_attention
from jaxlab.kernels.lif import lif_multistep
from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from jaxlab.kernels.xnor_attention import xnor_attention
from jaxlab.models.positional import gray_position_codes, grid_coordinates

COLUMNS = ["kernel", "pass", "impl", "ran", "shape", "dtype", "median_ms", "temp_mib", "speedup"]
_MIB = 2**20


def _attention_case(accelerator: bool):
  batch, length, heads, kv_heads, dim = (4, 2048, 16, 4, 128) if accelerator else (1, 512, 4, 2, 64)
  dtype = jnp.bfloat16 if accelerator else jnp.float32
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (batch, length, heads, dim), dtype)
  k = jax.random.normal(keys[1], (batch, length, kv_heads, dim), dtype)
  v = jax.random.normal(keys[2], (batch, length, kv_heads, dim), dtype)
  pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
  seg = (pos >= length // 3).astype(jnp.int32) + 1  # two packed documents

  def fn(target):
    return lambda q, k, v: flash_attention(
      q, k, v, q_index=pos, kv_index=pos, q_segment_ids=seg, kv_segment_ids=seg, target=target
    )

  return "flash_attention", fn, (q, k, v), f"B{batch} T{length} H{heads} K{kv_heads} D{dim}", dtype


def _linear_ce_case(accelerator: bool):
  tokens, dim, vocab = (8192, 2048, 32768) if accelerator else (512, 256, 8192)
  dtype = jnp.bfloat16 if accelerator else jnp.float32
  keys = jax.random.split(jax.random.key(1), 3)
  hidden = jax.random.normal(keys[0], (tokens, dim), dtype)
  head = (jax.random.normal(keys[1], (dim, vocab)) * dim**-0.5).astype(dtype)
  targets = jax.random.randint(keys[2], (tokens,), 0, vocab)
  weights = jnp.ones((tokens,), jnp.float32)

  def fn(target):
    return lambda hidden, head: fused_linear_cross_entropy(
      hidden, head, targets, weights, target=target
    )[0]

  return "linear_cross_entropy", fn, (hidden, head), f"N{tokens} D{dim} V{vocab}", dtype


def _lif_case(accelerator: bool):
  shape = (4, 64, 64, 384) if accelerator else (4, 16, 64, 128)
  x = jax.random.normal(jax.random.key(2), shape) + 0.5

  def fn(target):
    return lambda x: lif_multistep(x, target=target)

  return "lif_multistep", fn, (x,), "x".join(map(str, shape)), jnp.float32


def _xnor_case(accelerator: bool):
  steps, batch, heads, length, dim = (4, 32, 8, 256, 32) if accelerator else (4, 8, 4, 128, 16)
  keys = jax.random.split(jax.random.key(3), 3)
  q, k, v = [
    (jax.random.uniform(key, (steps, batch, heads, length, dim)) < 0.25).astype(jnp.float32)
    for key in keys
  ]
  codes = gray_position_codes(grid_coordinates((length,), False), 8)

  def fn(target):
    return lambda q, k, v: xnor_attention(q, k, v, 0.1, codes, target=target)

  return (
    "xnor_attention",
    fn,
    (q, k, v),
    f"T{steps} B{batch} H{heads} L{length} D{dim} nb8",
    jnp.float32,
  )


def _passes(fn: Callable, num_args: int) -> dict[str, Callable]:
  """Forward, and forward+backward (gradient of the output's sum for every argument)."""
  loss = lambda *a: jnp.sum(fn(*a).astype(jnp.float32))
  return {"fwd": fn, "fwd+bwd": jax.grad(loss, argnums=tuple(range(num_args)))}


def _measure(fn: Callable, args: tuple, repeats: int) -> tuple[float, float]:
  """(median seconds, compiled temp MiB)."""
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = memory.temp_size_in_bytes / _MIB if memory is not None else float("nan")
  seconds = median_seconds(lambda: jax.block_until_ready(compiled(*args)), repeats)
  return seconds, temp


_CPU_RAN = {
  "flash_attention": "jnp reference in custom_vjp",
  "linear_cross_entropy": "chunked XLA loop",
  "lif_multistep": "jnp scan in custom_vjp",
  "xnor_attention": "jnp reference in custom_vjp",
}


def run_kernel_benchmarks(out_path: str | None = None, repeats: int | None = None) -> list[dict]:
  """Times every kernel and its reference on the default device; rows with COLUMNS keys
  (speedup = reference time / kernel time, on the kernel rows). Writes JSON to `out_path`."""
  platform = jax.default_backend()
  accelerator = platform in ("tpu", "gpu")
  repeats = repeats or (20 if accelerator else 5)
  rows = []
  for case in (_attention_case, _linear_ce_case, _lif_case, _xnor_case):
    name, make_fn, args, shape, dtype = case(accelerator)
    for pass_name in ("fwd", "fwd+bwd"):
      timed = {}
      for impl, target in (("reference", "reference"), ("kernel", None)):
        fn = _passes(make_fn(target), len(args))[pass_name]
        timed[impl] = _measure(fn, args, repeats)
        ran = (
          "jnp reference"
          if impl == "reference"
          else f"Pallas {platform}"
          if accelerator
          else f"cpu: {_CPU_RAN[name]}"
        )
        rows.append(
          {
            "kernel": name,
            "pass": pass_name,
            "impl": impl,
            "ran": ran,
            "shape": shape,
            "dtype": jnp.dtype(dtype).name,
            "median_ms": timed[impl][0] * 1e3,
            "temp_mib": timed[impl][1],
            "speedup": timed["reference"][0] / timed[impl][0] if impl == "kernel" else "",
          }
        )
  if out_path:
    with open(out_path, "w") as f:
      json.dump({"device": str(jax.devices()[0]), "rows": rows}, f, indent=2)
  return rows


def kernel_table(rows: list[dict]) -> str:
  """The benchmark rows as a markdown table."""
  return markdown_table(rows, COLUMNS)
