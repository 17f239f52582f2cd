import numpy as np
import pytest

from jaxlab.data.canvas import paste_at_random_offsets


def test_every_copy_holds_its_image_wholly_inside_the_canvas():
  rng = np.random.default_rng(0)
  images = rng.random((5, 8, 8, 1)).astype(np.float32) + 0.1  # no zero pixel
  labels = np.arange(5, dtype=np.int32)
  canvases, copy_labels, offsets = paste_at_random_offsets(images, labels, 16, 40, seed=3)
  assert canvases.shape == (200, 16, 16, 1) and canvases.dtype == np.float32
  np.testing.assert_array_equal(copy_labels, np.repeat(labels, 40))
  assert offsets.min() == 0 and offsets.max() == 8  # 0 .. 16 - 8, both ends reached
  for row, (top, left) in enumerate(offsets):
    np.testing.assert_array_equal(canvases[row, top : top + 8, left : left + 8], images[row // 40])
    assert canvases[row].sum() == pytest.approx(images[row // 40].sum())  # blank elsewhere


def test_offsets_are_fixed_by_the_seed_and_vary_with_it():
  images, labels = np.ones((3, 8, 8, 1), np.float32), np.zeros(3, np.int32)
  first = paste_at_random_offsets(images, labels, 12, 4, seed=0)[2]
  np.testing.assert_array_equal(first, paste_at_random_offsets(images, labels, 12, 4, seed=0)[2])
  assert (first != paste_at_random_offsets(images, labels, 12, 4, seed=1)[2]).any()


def test_images_larger_than_the_canvas_are_rejected():
  with pytest.raises(ValueError, match="do not fit on a 6x6 canvas"):
    paste_at_random_offsets(np.ones((1, 8, 8, 1)), np.zeros(1), 6, 1, seed=0)
