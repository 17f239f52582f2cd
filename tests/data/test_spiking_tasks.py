import ml_collections
import numpy as np
import pytest

from jaxlab.data.spiking_tasks import (
  forecast_windows,
  load_series,
  load_task,
  order_task,
  patchify,
  task_spec,
)


def _markers(split, num_symbols):
  symbols = split.inputs.argmax(-1)
  return np.argmax(symbols == num_symbols, 1), np.argmax(symbols == num_symbols + 1, 1), symbols


def test_order_task_labels_are_near_or_far_marker_distances():
  split = order_task(2000, length=32, num_symbols=3, near=2, far=8, seed=0)
  assert split.inputs.shape == (2000, 32, 5) and split.targets.dtype == np.int32
  pos_a, pos_b, symbols = _markers(split, 3)
  assert ((symbols == 3).sum(1) == 1).all() and ((symbols == 4).sum(1) == 1).all()
  distance = np.abs(pos_a - pos_b)
  near = split.targets == 1
  assert ((distance >= 1) & (distance <= 2))[near].all()
  assert (distance >= 8)[~near].all()
  assert 0.45 < near.mean() < 0.55 and 0.45 < (pos_a < pos_b).mean() < 0.55
  # Positions carry the label, the bag of tokens does not: both classes have the same counts.
  np.testing.assert_allclose(
    split.inputs[near].sum((0, 1)) / near.sum(),
    split.inputs[~near].sum((0, 1)) / (~near).sum(),
    rtol=0.05,
  )


def test_order_task_is_fixed_by_its_seed():
  a, b = order_task(50, 16, 2, 2, 6, seed=3), order_task(50, 16, 2, 2, 6, seed=3)
  np.testing.assert_array_equal(a.inputs, b.inputs)
  with pytest.raises(ValueError, match="near < far < length"):
    order_task(10, 16, 2, near=6, far=6, seed=0)


def test_forecast_windows_split_chronologically_and_standardize():
  series = np.arange(100, dtype=np.float64)
  train, test = forecast_windows(series, window=8, horizon=2, test_fraction=0.2)
  mean, std = series[:80].mean(), series[:80].std()
  restore = lambda x: x * std + mean
  np.testing.assert_allclose(restore(train.inputs[0, :, 0]), np.arange(8), atol=1e-4)
  np.testing.assert_allclose(restore(train.targets[0]), [8, 9], atol=1e-4)
  assert restore(train.targets).max() < 80 - 1e-3 and restore(test.targets).min() > 80 - 1e-3
  assert len(train) == 80 - 10 + 1 and len(test) == 20 - 2 + 1
  with pytest.raises(ValueError, match="too short"):
    forecast_windows(series, window=90, horizon=2, test_fraction=0.2)


def test_sunspots_ship_with_statsmodels():
  series = load_series("sunspots")
  assert series.shape == (309,) and np.isfinite(series).all()
  # Yearly means from 1700 (Wolf numbers): the first years and the 1957 maximum.
  assert series[:5].tolist() == [5.0, 11.0, 16.0, 23.0, 36.0]
  assert series.max() == 190.2 and series.argmax() == 1957 - 1700


def test_co2_gaps_are_interpolated_linearly():
  series = load_series("co2")
  # 2284 weekly values, 59 of them missing in statsmodels' copy: filled, none dropped.
  assert series.shape == (2284,) and np.isfinite(series).all()
  # Value 6 is missing between 316.9 and 317.5; values 9-13, five in a row, between 317.9
  # (value 8) and 315.8 (value 14).
  np.testing.assert_allclose(series[5:8], [316.9, 317.2, 317.5], rtol=1e-12)
  np.testing.assert_allclose(series[8:15], np.linspace(317.9, 315.8, 7), rtol=1e-12)


def test_patchify_is_row_major_over_patches():
  images = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  patches = patchify(images, 2)
  assert patches.shape == (1, 2, 2, 4)
  np.testing.assert_array_equal(patches[0, 0, 1], [2, 3, 6, 7])
  np.testing.assert_array_equal(patches[0, 1, 0], [8, 9, 12, 13])


@pytest.mark.parametrize(
  "task,data",
  [
    ("order", dict(length=16, num_symbols=2, near=2, far=6, num_train=20, num_test=10, seed=0)),
    ("forecast", dict(series="sunspots", window=16, horizon=3, test_fraction=0.2)),
    ("digits", dict(patch_size=2, test_fraction=0.2, seed=0)),
  ],
)
def test_task_spec_matches_the_loaded_data(task, data):
  data = ml_collections.ConfigDict(data)
  spec = task_spec(task, data)
  train, test = load_task(task, data)
  assert train.inputs.shape[1:] == test.inputs.shape[1:] == spec.input_shape
  if spec.is_classification:
    assert train.targets.ndim == 1 and train.targets.max() < spec.num_outputs
  else:
    assert train.targets.shape[1] == spec.num_outputs
