"""Agreement tolerances for kernels against their float32 references, per input dtype.

The error is measured relative to the largest magnitude of the expected array (gradients of
different tensors have very different scales; zeros must agree absolutely). float32 kernels
differ from the reference only by summation order; bfloat16 kernels round their inputs to the
matmuls (probabilities, score cotangents) and their outputs to bfloat16 (2^-8 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np

TOLERANCE = {jnp.dtype(jnp.float32): 2e-5, jnp.dtype(jnp.bfloat16): 3e-2}


def assert_close(actual, expected, dtype, what: str) -> None:
  actual = np.asarray(jnp.asarray(actual, jnp.float32))
  expected = np.asarray(jnp.asarray(expected, jnp.float32))
  assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
  scale = max(float(np.abs(expected).max()), 1e-3)
  error = float(np.abs(actual - expected).max()) / scale
  assert error <= TOLERANCE[jnp.dtype(dtype)], f"{what}: relative error {error:.3g}"


def cotangent(shape, seed: int = 7) -> jnp.ndarray:
  """A fixed, non-uniform output weighting so that gradients see every element differently."""
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def fast_jit(fn):
  """jax.jit without LLVM optimization: interpret-mode kernels compile ~30% faster, and these
  tests time compiles, not runs."""
  return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})
