"""Image data for the DLL study: digits by default, local .npz files, tfds without downloads, and
one-line errors naming what is missing."""

import sys
import types

import ml_collections
import numpy as np
import pytest

from jaxlab.data import vision


def _data_cfg(**overrides):
  cfg = ml_collections.ConfigDict(
    dict(name="digits", npz_path="", tfds_data_dir="", test_fraction=0.2, split_seed=0)
  )
  cfg.update(overrides)
  return cfg


def test_digits_is_the_default_and_deterministic():
  from sklearn.datasets import load_digits

  train, test = vision.load_images(_data_cfg())
  again, _ = vision.load_images(_data_cfg())
  assert train.images.shape[1:] == (8, 8, 1) and len(train.labels) + len(test.labels) == 1797
  np.testing.assert_array_equal(train.labels, again.labels)
  # Pixels are sklearn's 0..16 counts over 16, and the split is stratified: round(20%) per class.
  bunch = load_digits()
  for split in (train, test):
    assert split.images.dtype == np.float32 and split.labels.dtype == np.int32
    assert set(np.unique(split.images * 16).tolist()) <= set(range(17))
  assert train.images.max() == 1.0 and train.images.min() == 0.0
  per_class = np.bincount(bunch.target)
  np.testing.assert_array_equal(np.bincount(test.labels), np.round(0.2 * per_class))
  np.testing.assert_array_equal(np.bincount(train.labels) + np.bincount(test.labels), per_class)
  # Every image keeps its own label: the first training image of each class is one of sklearn's.
  for label in range(10):
    image = train.images[train.labels == label][0, ..., 0] * 16
    matches = (bunch.images == image).all((1, 2))
    assert matches.any() and set(bunch.target[matches]) == {label}


def test_npz_file_is_read_and_scaled(tmp_path):
  rng = np.random.RandomState(0)
  path = tmp_path / "mnist.npz"
  x_train = rng.randint(0, 256, (6, 28, 28)).astype(np.uint8)
  x_train[0, 0, :3] = [0, 51, 255]
  x_test = rng.randint(0, 256, (4, 28, 28)).astype(np.uint8)
  np.savez(
    path,
    x_train=x_train,
    y_train=np.array([9, 3, 3, 0, 7, 1]),
    x_test=x_test,
    y_test=np.array([[2], [8], [5], [2]]),  # labels as a column, as Keras ships CIFAR-10's
  )
  train, test = vision.load_images(_data_cfg(name="mnist", npz_path=str(path)))
  assert train.images.shape == (6, 28, 28, 1) and test.images.shape == (4, 28, 28, 1)
  assert train.images.dtype == test.images.dtype == np.float32
  # Pixels are byte / 255, in file order (no shuffling, train from x_train, test from x_test).
  assert train.images[0, 0, :3, 0].tolist() == [0.0, np.float32(0.2), 1.0]
  np.testing.assert_allclose(train.images[..., 0], x_train / 255.0, rtol=1e-7, atol=0)
  np.testing.assert_allclose(test.images[..., 0], x_test / 255.0, rtol=1e-7, atol=0)
  assert train.labels.dtype == test.labels.dtype == np.int32
  assert train.labels.tolist() == [9, 3, 3, 0, 7, 1] and test.labels.tolist() == [2, 8, 5, 2]


def test_npz_with_wrong_image_shape_is_refused(tmp_path):
  path = tmp_path / "x.npz"
  np.savez(
    path,
    x_train=np.zeros((2, 28, 28)),
    y_train=np.zeros(2),
    x_test=np.zeros((2, 28, 28)),
    y_test=np.zeros(2),
  )
  with pytest.raises(vision.DataUnavailableError, match=r"cifar10 images should be \(32, 32, 3\)"):
    vision.load_images(_data_cfg(name="cifar10", npz_path=str(path)))


@pytest.mark.parametrize(
  "make,message",
  [
    (lambda p: None, "data.npz_path: no file"),
    (lambda p: np.savez(p, x_train=np.zeros(1), y_train=np.zeros(1)), "lacks x_test, y_test"),
  ],
)
def test_bad_npz_is_one_line(tmp_path, make, message):
  path = tmp_path / "data.npz"
  make(path)
  with pytest.raises(vision.DataUnavailableError, match=message) as info:
    vision.check_available(_data_cfg(name="mnist", npz_path=str(path)))
  assert "\n" not in str(info.value)


def test_without_tfds_the_error_names_both_options(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(vision.DataUnavailableError) as info:
    vision.check_available(_data_cfg(name="fashion_mnist"))
  message = str(info.value)
  assert "data.npz_path" in message and "tensorflow_datasets is not installed" in message


def _fake_tfds(data_dir, splits):
  """A stand-in tensorflow_datasets module: builders rooted at `data_dir`, numpy splits."""

  class Builder:
    def __init__(self, name, data_dir=None):
      self.data_dir = str(data_dir) + f"/{name}/1.0.0"

    def as_dataset(self, split, batch_size, as_supervised):
      assert batch_size == -1 and as_supervised
      return splits[split]

  return types.SimpleNamespace(builder=Builder, as_numpy=lambda x: x)


def test_tfds_never_downloads_and_reads_a_prepared_copy(tmp_path, monkeypatch):
  splits = {
    "train": (np.zeros((3, 32, 32, 3), np.uint8), np.arange(3)),
    "test": (np.full((2, 32, 32, 3), 255, np.uint8), np.arange(2)),
  }
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(tmp_path, splits))
  cfg = _data_cfg(name="cifar10", tfds_data_dir=str(tmp_path))
  with pytest.raises(vision.DataUnavailableError, match="tfds data set cifar10 is not prepared"):
    vision.check_available(cfg)
  prepared = tmp_path / "cifar10" / "1.0.0"
  prepared.mkdir(parents=True)
  (prepared / "dataset_info.json").write_text("{}")
  train, test = vision.load_images(cfg)
  assert train.images.shape == (3, 32, 32, 3) and float(test.images.max()) == 1.0


def test_unknown_name():
  with pytest.raises(vision.DataUnavailableError, match="unknown data.name 'svhn'"):
    vision.check_available(_data_cfg(name="svhn"))
