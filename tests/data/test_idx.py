"""IDX files (MNIST's format): exact round trips for every type code, gzipped or not, the
four-file directory layout through the vision loader, and one-line errors for bad files."""

import ml_collections
import numpy as np
import pytest

from jaxlab.data import idx, vision
from tests.data.helpers import idx_bytes, write_idx, write_mnist_dir


@pytest.mark.parametrize(
  "code,dtype",
  [
    (0x08, np.uint8),
    (0x09, np.int8),
    (0x0B, np.int16),
    (0x0C, np.int32),
    (0x0D, np.float32),
    (0x0E, np.float64),
  ],
)
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_every_type_code_round_trips(tmp_path, code, dtype, name):
  rng = np.random.RandomState(code)
  info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
  if info:  # the extremes of the type, where a wrong byte order or sign shows
    array = rng.randint(info.min, info.max, (3, 4, 5), dtype=np.int64).astype(dtype)
    array.flat[:2] = [info.min, info.max]
  else:
    array = rng.randn(3, 4, 5).astype(dtype) * 1e3
  read = idx.read_idx(write_idx(tmp_path / name, array, code))
  assert read.dtype == np.dtype(dtype) and read.shape == (3, 4, 5)
  np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize("compress", [True, False])
def test_vision_reads_an_mnist_layout_directory(tmp_path, compress):
  arrays = write_mnist_dir(tmp_path, compress=compress)
  cfg = ml_collections.ConfigDict(
    dict(name="fashion_mnist", npz_path="", idx_dir=str(tmp_path), tfds_data_dir="")
  )
  vision.check_available(cfg)
  train, test = vision.load_images(cfg)
  assert train.images.shape == (6, 28, 28, 1) and test.images.shape == (4, 28, 28, 1)
  np.testing.assert_allclose(train.images[..., 0], arrays["train", "images"] / 255.0, rtol=1e-7)
  np.testing.assert_allclose(test.images[..., 0], arrays["test", "images"] / 255.0, rtol=1e-7)
  assert train.labels.tolist() == arrays["train", "labels"].tolist()
  assert test.labels.tolist() == arrays["test", "labels"].tolist()


def test_a_missing_file_is_named_before_anything_is_read(tmp_path):
  write_mnist_dir(tmp_path)
  (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
  cfg = ml_collections.ConfigDict(
    dict(name="mnist", npz_path="", idx_dir=str(tmp_path), tfds_data_dir="")
  )
  with pytest.raises(vision.DataUnavailableError, match=r"has no t10k-labels-idx1-ubyte\[\.gz\]$"):
    vision.check_available(cfg)


@pytest.mark.parametrize(
  "name,content,message",
  [
    ("x", b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic number"),
    ("x", b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "bad magic number"),
    ("x", b"\x00\x00\x08\x02\x00\x00", "header cut short"),
    ("x", idx_bytes(np.arange(6, dtype=np.uint8), 0x08)[:-1], r"needs 6 bytes of data, found 5"),
    ("x.gz", b"not gzip at all", "not a readable gzip file"),
  ],
)
def test_bad_files_fail_in_one_line(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(idx.IdxFormatError, match=message) as info:
    idx.read_idx(str(path))
  assert "\n" not in str(info.value)


def test_image_and_label_counts_must_agree(tmp_path):
  write_mnist_dir(tmp_path)
  write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
  with pytest.raises(idx.IdxFormatError, match="6 train images but 5 labels"):
    idx.load_idx_dir(str(tmp_path))
