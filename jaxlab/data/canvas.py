"""Small images pasted at random offsets onto a larger blank canvas.

A classifier of the result has to recognize a shape wherever it lies: the class is carried by
where the pixels lie relative to each other, not by where they lie on the canvas.
"""

from __future__ import annotations

import numpy as np


def paste_at_random_offsets(
  images: np.ndarray, labels: np.ndarray, canvas: int, copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`copies` pastes of every image [N, h, w, C] onto a zero canvas [canvas, canvas, C].

  Offsets (row, column) are drawn uniformly from 0 .. canvas - h (resp. - w), so every image lies
  wholly inside its canvas. Returns (canvases [N * copies, canvas, canvas, C], labels
  [N * copies], offsets [N * copies, 2]); copy k of image i is row i * copies + k."""
  num, height, width, channels = images.shape
  if height > canvas or width > canvas:
    raise ValueError(f"{height}x{width} images do not fit on a {canvas}x{canvas} canvas")
  if copies < 1:
    raise ValueError(f"copies must be at least 1, got {copies}")
  rng = np.random.default_rng(seed)
  total = num * copies
  offsets = np.stack(
    [rng.integers(0, canvas - height + 1, total), rng.integers(0, canvas - width + 1, total)], 1
  )
  source = np.repeat(np.arange(num), copies)
  canvases = np.zeros((total, canvas, canvas, channels), images.dtype)
  for row, (image, (top, left)) in enumerate(zip(images[source], offsets)):
    canvases[row, top : top + height, left : left + width] = image
  return canvases, labels[source], offsets
