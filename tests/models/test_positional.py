import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models.positional import (
  gray_code,
  gray_code_bits,
  gray_position_codes,
  grid_coordinates,
  log_relative_bias,
  min_gray_bits,
)


def _hamming(a, b):
  return jax.lax.population_count(jnp.bitwise_xor(a, b))


def test_gray_code_values_and_integer_dtype():
  codes = gray_code(jnp.arange(8, dtype=jnp.int32))
  np.testing.assert_array_equal(codes, [0, 1, 3, 2, 6, 7, 5, 4])
  assert codes.dtype == jnp.int32
  with pytest.raises(TypeError):
    gray_code(jnp.arange(4, dtype=jnp.float32))


def test_gray_code_bits_are_most_significant_first():
  bits = gray_code_bits(jnp.array([5, 8]), 4)  # G(5) = 0b0111, G(8) = 0b1100
  np.testing.assert_array_equal(bits, [[0, 1, 1, 1], [1, 1, 0, 0]])
  assert bits.shape == (2, 4) and bits.dtype == jnp.float32


def test_theorem_1_power_of_two_distances_have_a_fixed_hamming_distance():
  """Hamming(G(a), G(a + 2^n)) is 1 for n = 0 and 2 for n >= 1, for every a < 2^10, n < 10."""
  a = jnp.arange(2**10, dtype=jnp.int32)[:, None]
  n = jnp.arange(10, dtype=jnp.int32)[None, :]
  distance = _hamming(gray_code(a), gray_code(a + (1 << n)))
  expected = jnp.broadcast_to(jnp.where(n == 0, 1, 2), distance.shape)
  np.testing.assert_array_equal(distance, expected)


def test_other_distances_are_only_partially_captured():
  a = jnp.arange(2**10, dtype=jnp.int32)
  assert set(np.unique(_hamming(gray_code(a), gray_code(a + 3))).tolist()) == {1, 3}


def test_position_codes_1d_and_2d():
  codes_1d = gray_position_codes(grid_coordinates((2, 3), two_d=False), 3)
  np.testing.assert_array_equal(codes_1d, gray_code_bits(jnp.arange(6), 3))
  codes_2d = gray_position_codes(grid_coordinates((2, 3), two_d=True), 2)
  assert codes_2d.shape == (6, 4)
  np.testing.assert_array_equal(codes_2d[5], [0, 1, 1, 1])  # row 1 -> G=01, column 2 -> G=11
  with pytest.raises(ValueError):
    grid_coordinates((6,), two_d=True)


@pytest.mark.parametrize("length,bits", [(1, 1), (2, 1), (16, 4), (17, 5), (32, 5), (33, 6)])
def test_min_gray_bits(length, bits):
  assert min_gray_bits(length) == bits


def test_log_bias_is_the_papers_toeplitz_formula():
  length = 32
  bias = log_relative_bias(length)
  i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
  expected = np.maximum(0, np.ceil(np.log2((length - 1) / (np.abs(i - j) + 1))))
  np.testing.assert_array_equal(bias, expected)
  assert bias[0, 0] == 5 and bias[0, 1] == 4 and bias[0, 3] == 3 and bias[0, length - 1] == 0
  for offset in range(-length + 1, length):  # constant along every diagonal
    assert len(set(np.diagonal(bias, offset).tolist())) == 1
  assert (np.diff(bias[0]) <= 0).all() and (bias >= 0).all()
