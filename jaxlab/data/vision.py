"""Image classification data for the DLL study: digits by default, MNIST/Fashion-MNIST/CIFAR-10
when the user has them. Nothing is ever downloaded.

Sources, in order: `data.npz_path` (an .npz with x_train, y_train, x_test, y_test), else
`data.idx_dir` (a directory with the four IDX files MNIST and Fashion-MNIST ship as), else an
already prepared tensorflow-datasets copy (`download=False`, under `data.tfds_data_dir` or tfds'
default). What is missing is reported in one line, before a run writes anything.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.data.digits import ImageSplit, load_digits
from jaxlab.data.idx import IdxFormatError, idx_paths, load_idx_dir

IMAGE_SHAPES = {
  "digits": (8, 8, 1),
  "mnist": (28, 28, 1),
  "fashion_mnist": (28, 28, 1),
  "cifar10": (32, 32, 3),
}
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataUnavailableError(ValueError):
  """The data set cannot be read here; the message (one line) says what is missing."""


def check_available(data_cfg: ml_collections.ConfigDict) -> None:
  """Cheap check that `load_images(data_cfg)` can find its data; raises DataUnavailableError."""
  name = data_cfg.name
  if name not in IMAGE_SHAPES:
    raise DataUnavailableError(
      f"unknown data.name {name!r}; choose one of {', '.join(IMAGE_SHAPES)}"
    )
  if data_cfg.npz_path:
    _check_npz(data_cfg.npz_path)
  elif data_cfg.get("idx_dir"):
    try:
      idx_paths(data_cfg.idx_dir)
    except IdxFormatError as e:
      raise DataUnavailableError(str(e)) from None
  elif name != "digits":
    _tfds_builder(name, data_cfg.tfds_data_dir)


def load_images(data_cfg: ml_collections.ConfigDict) -> tuple[ImageSplit, ImageSplit]:
  """(train, test) with images [N, H, W, C] float32 in [0, 1] and int32 labels."""
  check_available(data_cfg)
  if data_cfg.npz_path:
    with fileio.open_file(data_cfg.npz_path, "rb") as f, np.load(f) as arrays:
      splits = (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
  elif data_cfg.get("idx_dir"):
    try:
      splits = load_idx_dir(data_cfg.idx_dir)
    except IdxFormatError as e:
      raise DataUnavailableError(str(e)) from None
  elif data_cfg.name == "digits":
    return load_digits(test_fraction=data_cfg.test_fraction, seed=data_cfg.split_seed)
  else:
    splits = _load_tfds(data_cfg.name, data_cfg.tfds_data_dir)
  train, test = (_image_split(x, y) for x, y in splits)
  expected = IMAGE_SHAPES[data_cfg.name]
  if train.images.shape[1:] != expected:
    raise DataUnavailableError(
      f"{data_cfg.name} images should be {expected} (H, W, C), got {train.images.shape[1:]}"
    )
  return train, test


def _image_split(images: np.ndarray, labels: np.ndarray) -> ImageSplit:
  if images.ndim == 3:
    images = images[..., None]
  if np.issubdtype(images.dtype, np.integer):
    images = images.astype(np.float32) / 255.0
  return ImageSplit(images.astype(np.float32), labels.astype(np.int32).reshape(-1))


def _check_npz(path: str) -> None:
  if not fileio.isfile(path):
    raise DataUnavailableError(f"data.npz_path: no file {path}")
  with fileio.open_file(path, "rb") as f, np.load(f) as arrays:
    missing = [k for k in NPZ_KEYS if k not in arrays.files]
  if missing:
    raise DataUnavailableError(
      f"data.npz_path {path} lacks {', '.join(missing)} (needs {', '.join(NPZ_KEYS)})"
    )


def _tfds_builder(name: str, data_dir: str):
  """The tfds builder of an already prepared copy of `name`."""
  try:
    import tensorflow_datasets as tfds  # optional and heavy: only for non-digits data
  except ImportError:
    raise DataUnavailableError(
      f"data.name={name!r} needs data.npz_path (an .npz with {', '.join(NPZ_KEYS)}) or "
      f"tensorflow-datasets with {name} prepared; tensorflow_datasets is not installed"
    ) from None
  builder = tfds.builder(name, data_dir=data_dir or None)
  if not os.path.isfile(os.path.join(str(builder.data_dir), "dataset_info.json")):
    raise DataUnavailableError(
      f"tfds data set {name} is not prepared in {builder.data_dir} (downloads are off); "
      f"prepare it with `tfds build {name}` or set data.npz_path"
    )
  return builder


def _load_tfds(name: str, data_dir: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  import tensorflow_datasets as tfds

  builder = _tfds_builder(name, data_dir)
  return tuple(
    tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    for split in ("train", "test")
  )
