import warnings

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
  rope_tables,
  rotate,
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


def test_2d_grid_coordinates_are_row_major_row_then_column():
  coordinates = grid_coordinates((2, 3), two_d=True)
  np.testing.assert_array_equal(coordinates, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]])
  # 2 bits per axis: G(0) = 00, G(1) = 01, G(2) = 11; each row is [G(row) || G(column)].
  codes = gray_position_codes(coordinates, 2)
  expected = [
    [0, 0, 0, 0],  # (0, 0)
    [0, 0, 0, 1],  # (0, 1)
    [0, 0, 1, 1],  # (0, 2)
    [0, 1, 0, 0],  # (1, 0)
    [0, 1, 0, 1],  # (1, 1)
    [0, 1, 1, 1],  # (1, 2)
  ]
  np.testing.assert_array_equal(codes, expected)
  # A 3 x 2 grid: token 1 is (row 0, column 1) -> [00 || 01], token 2 is (1, 0) -> [01 || 00].
  tall = gray_position_codes(grid_coordinates((3, 2), two_d=True), 2)
  np.testing.assert_array_equal(tall[1], [0, 0, 0, 1])
  np.testing.assert_array_equal(tall[2], [0, 1, 0, 0])
  np.testing.assert_array_equal(tall[5], [1, 1, 0, 1])  # (2, 1)


def test_rope_rotates_each_half_split_pair_by_position_times_frequency():
  """head_dim 4, theta 100: pair i = (x[i], x[i + 2]) turns by p * 100^(-2i/4), i.e. by p and
  p / 10 radians; (a, b) -> (a cos - b sin, a sin + b cos), counter-clockwise."""
  cos, sin = rope_tables(jnp.array([[0, 3]]), head_dim=4, theta=100.0)
  assert cos.shape == sin.shape == (1, 2, 1, 2)
  np.testing.assert_allclose(cos[0, :, 0], [[1, 1], [np.cos(3.0), np.cos(0.3)]], rtol=1e-6)
  np.testing.assert_allclose(sin[0, :, 0], [[0, 0], [np.sin(3.0), np.sin(0.3)]], atol=1e-7)
  x = jnp.broadcast_to(jnp.array([1.0, 2.0, 3.0, 4.0]), (1, 2, 1, 4))
  out = rotate(x, cos, sin)
  np.testing.assert_allclose(out[0, 0, 0], [1, 2, 3, 4], rtol=1e-6)  # position 0: no turn
  c3, s3, c03, s03 = np.cos(3.0), np.sin(3.0), np.cos(0.3), np.sin(0.3)
  expected = [1 * c3 - 3 * s3, 2 * c03 - 4 * s03, 1 * s3 + 3 * c3, 2 * s03 + 4 * c03]
  np.testing.assert_allclose(out[0, 1, 0], expected, rtol=1e-5, atol=1e-6)
  # (1, 0) in pair 0 at angle 3: (cos 3, sin 3) -- the sine lands in the second half, positive.
  unit = rotate(jnp.array([1.0, 0.0, 0.0, 0.0])[None, None, None], cos[:, 1:], sin[:, 1:])
  np.testing.assert_allclose(unit[0, 0, 0], [c3, 0, s3, 0], atol=1e-6)


def test_rope_dot_products_depend_only_on_the_offset():
  """q . k after RoPE at (p, p') equals q . k at (p + s, p' + s)."""
  rng = np.random.RandomState(0)
  q, k = (jnp.asarray(rng.randn(1, 1, 1, 8).astype(np.float32)) for _ in range(2))

  def score(p, p_prime):
    cos, sin = rope_tables(jnp.array([[p, p_prime]]), head_dim=8)
    rq = rotate(q, cos[:, :1], sin[:, :1])
    rk = rotate(k, cos[:, 1:], sin[:, 1:])
    return float(jnp.sum(rq * rk))

  for p, p_prime in [(0, 3), (5, 2), (7, 7)]:
    base = score(p, p_prime)
    for shift in (1, 4, 11):
      np.testing.assert_allclose(score(p + shift, p_prime + shift), base, rtol=1e-4, atol=1e-5)
  assert abs(score(0, 3) - score(0, 0)) > 1e-3  # the offset does matter


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


def test_dtypes_defaults_and_messages():
  """What the first mutation run of this module left untested: RoPE's default theta (10,000) and
  float32 tables, rotation in float32 returning the input dtype, the requested dtype of Gray bits,
  Log-PE's float32 bias, and the error texts."""
  positions = jnp.asarray([[0, 1, 7]], jnp.int32)
  cos, sin = rope_tables(positions, 8)
  inv_freq = 10000.0 ** (-np.arange(0, 8, 2) / 8)
  angles = np.asarray([0, 1, 7])[:, None] * inv_freq[None, :]
  assert cos.dtype == sin.dtype == jnp.float32
  np.testing.assert_allclose(cos[0, :, 0], np.cos(angles), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(sin[0, :, 0], np.sin(angles), rtol=1e-6, atol=1e-7)
  x = jnp.asarray(np.random.RandomState(0).randn(1, 3, 1, 8), jnp.bfloat16)
  rotated = rotate(x, cos, sin)
  assert rotated.dtype == jnp.bfloat16
  exact = rotate(x.astype(jnp.float32), cos, sin)
  np.testing.assert_array_equal(rotated, exact.astype(jnp.bfloat16))
  bits = gray_code_bits(jnp.asarray([5]), 4, dtype=jnp.int8)
  assert bits.dtype == jnp.int8 and bits.tolist() == [[0, 1, 1, 1]]  # G(5) = 7
  assert log_relative_bias(4).dtype == np.float32
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # log2(0) at length 1 must not warn
    assert log_relative_bias(1).tolist() == [[0.0]]
  with pytest.raises(TypeError, match="gray_code takes integers, got float32"):
    gray_code(jnp.asarray([1.0]))
  with pytest.raises(ValueError, match=r"2D coordinates need a 2D grid, got \(16,\)"):
    grid_coordinates((16,), True)
