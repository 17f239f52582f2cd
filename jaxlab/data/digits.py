"""scikit-learn's 8x8 digits (ships inside the package, no download) with a deterministic split."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  """Images [N, H, W, C] float32 in [0, 1] and integer labels [N]."""

  images: np.ndarray
  labels: np.ndarray

  @property
  def num_classes(self) -> int:
    return int(self.labels.max()) + 1


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
  """(train, test) splits of the 1797 digits, stratified per class and fixed by `seed`."""
  from sklearn.datasets import load_digits as sklearn_digits  # heavy import, only when used

  bunch = sklearn_digits()
  images = (bunch.images / 16.0).astype(np.float32)[..., None]
  labels = bunch.target.astype(np.int32)
  rng = np.random.RandomState(seed)
  test_mask = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    test_mask[members[: int(round(test_fraction * len(members)))]] = True
  return (
    ImageSplit(images[~test_mask], labels[~test_mask]),
    ImageSplit(images[test_mask], labels[test_mask]),
  )
