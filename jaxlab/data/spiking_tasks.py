"""Data for the spiking-Transformer runs, as whole in-memory arrays (all are small).

- order: a generated sequence task whose label is the distance between two marker symbols
  (near or far), so a model that cannot see positions stays at chance.
- forecast: sliding windows over a real series shipped inside statsmodels (no download).
- digits: scikit-learn's 8x8 digits cut into non-overlapping patches on a 2D grid.
- canvas: the same digits pasted at random offsets onto a larger blank canvas (raw images, for
  the SPS stem): what identifies a digit is where its pixels lie relative to each other.
- words: word-order pairs (as written / two adjacent words swapped) from text shipped with
  Python; one-hot word tokens, and both classes share their token multisets.

Every split holds inputs [N, *grid, F] float32 (tokens on a 1D or 2D grid) and targets:
int32 labels [N] for classification, float32 [N, horizon] for forecasting.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from jaxlab.data.canvas import paste_at_random_offsets
from jaxlab.data.digits import load_digits
from jaxlab.data.word_order import load_word_order

TASKS = ("order", "forecast", "digits", "canvas", "words")


@dataclasses.dataclass(frozen=True)
class Split:
  inputs: np.ndarray
  targets: np.ndarray

  def __len__(self) -> int:
    return len(self.inputs)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a model for a task takes and gives: inputs (*grid, features), outputs, loss kind."""

  input_shape: tuple[int, ...]
  num_outputs: int
  is_classification: bool


# ---------------------------------------------------------------- order: relative distance


def order_task(
  num_examples: int, length: int, num_symbols: int, near: int, far: int, seed: int
) -> Split:
  """Sequences of random noise symbols with one marker A and one marker B.

  Label 1 ("near") when 1 <= |pos(B) - pos(A)| <= near, label 0 ("far") when it is >= far;
  classes are balanced and either marker may come first. Tokens are one-hot over
  `num_symbols` noise symbols plus A and B. The multiset of tokens does not depend on the label,
  so only positional information can solve it.
  """
  if not 1 <= near < far < length:
    raise ValueError(
      f"order task needs 1 <= near < far < length, got near={near}, far={far}, length={length}"
    )
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, num_examples).astype(np.int32)
  low = np.where(labels == 1, 1, far)
  high = np.where(labels == 1, near, length - 1)
  distance = rng.integers(low, high + 1)
  first = rng.integers(0, length - distance)
  a_first = rng.integers(0, 2, num_examples).astype(bool)
  pos_a = np.where(a_first, first, first + distance)
  pos_b = np.where(a_first, first + distance, first)
  symbols = rng.integers(0, num_symbols, (num_examples, length))
  rows = np.arange(num_examples)
  symbols[rows, pos_a] = num_symbols
  symbols[rows, pos_b] = num_symbols + 1
  inputs = np.eye(num_symbols + 2, dtype=np.float32)[symbols]
  return Split(inputs, labels)


# ---------------------------------------------------------------- forecast: real series

SERIES = ("sunspots", "co2", "elnino")


def load_series(name: str) -> np.ndarray:
  """A univariate float64 series from statsmodels' bundled data sets (gaps interpolated)."""
  from statsmodels import datasets  # heavy import, only when used

  if name == "sunspots":
    return datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
  if name == "co2":
    return datasets.co2.load_pandas().data["co2"].interpolate().to_numpy(np.float64)
  if name == "elnino":
    return datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy(np.float64).ravel()
  raise ValueError(f"unknown data.series {name!r}; choose from {', '.join(SERIES)}")


def forecast_windows(
  series: np.ndarray, window: int, horizon: int, test_fraction: float
) -> tuple[Split, Split]:
  """(train, test) windows: inputs [N, window, 1] -> targets the next `horizon` values [N, horizon].

  Chronological split: training targets all lie in the first (1 - test_fraction) of the series,
  test targets in the rest. Values are standardized with the training part's mean and std.
  """
  split_at = int(round(len(series) * (1 - test_fraction)))
  if split_at - window - horizon < 1 or len(series) - split_at < horizon:
    raise ValueError(
      f"series of {len(series)} values is too short for window={window}, "
      f"horizon={horizon}, test_fraction={test_fraction}"
    )
  train_part = series[:split_at]
  values = ((series - train_part.mean()) / train_part.std()).astype(np.float32)
  span = window + horizon
  starts = np.arange(len(values) - span + 1)
  windows = values[starts[:, None] + np.arange(span)]
  last_target = starts + span - 1
  first_target = starts + window

  def take(mask):
    return Split(windows[mask, :window, None], windows[mask, window:])

  return take(last_target < split_at), take(first_target >= split_at)


# ---------------------------------------------------------------- digits: image patches


def patchify(images: np.ndarray, patch: int) -> np.ndarray:
  """[N, H, W, C] -> [N, H/p, W/p, p*p*C] non-overlapping patches, row-major."""
  n, height, width, channels = images.shape
  if height % patch or width % patch:
    raise ValueError(f"patch size {patch} does not divide the {height}x{width} images")
  grid = images.reshape(n, height // patch, patch, width // patch, patch, channels)
  return grid.transpose(0, 1, 3, 2, 4, 5).reshape(n, height // patch, width // patch, -1)


# ---------------------------------------------------------------- dispatch on config.task


def task_spec(task: str, data: ml_collections.ConfigDict) -> TaskSpec:
  """The task's shapes, from the config alone (nothing is loaded)."""
  if task == "order":
    return TaskSpec((data.length, data.num_symbols + 2), 2, True)
  if task == "forecast":
    return TaskSpec((data.window, 1), data.horizon, False)
  if task == "digits":
    if 8 % data.patch_size:
      raise ValueError(f"data.patch_size={data.patch_size} does not divide the 8x8 digits")
    side = 8 // data.patch_size
    return TaskSpec((side, side, data.patch_size**2), 10, True)
  if task == "canvas":
    if data.canvas < 8:
      raise ValueError(f"data.canvas={data.canvas} is smaller than the 8x8 digits")
    return TaskSpec((data.canvas, data.canvas, 1), 10, True)
  if task == "words":
    return TaskSpec((data.length, data.vocab_size + 1), 2, True)
  raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def load_task(task: str, data: ml_collections.ConfigDict) -> tuple[Split, Split]:
  """(train, test) splits of `task`; generated data and the digits split are fixed by data.seed."""
  if task == "order":

    def make(num, seed):
      return order_task(num, data.length, data.num_symbols, data.near, data.far, seed)

    return make(data.num_train, data.seed), make(data.num_test, data.seed + 1)
  if task == "forecast":
    return forecast_windows(load_series(data.series), data.window, data.horizon, data.test_fraction)
  if task == "digits":
    train, test = load_digits(data.test_fraction, data.seed)
    return (
      Split(patchify(train.images, data.patch_size), train.labels),
      Split(patchify(test.images, data.patch_size), test.labels),
    )
  if task == "canvas":
    train, test = load_digits(data.test_fraction, data.seed)

    def paste(split, copies, seed):
      canvases, labels, _ = paste_at_random_offsets(
        split.images, split.labels, data.canvas, copies, seed
      )
      return Split(canvases, labels)

    return paste(train, data.train_copies, data.seed), paste(test, data.test_copies, data.seed + 1)
  if task == "words":
    train, test = load_word_order(data.length, data.vocab_size, data.test_fraction, data.seed)
    one_hot = np.eye(data.vocab_size + 1, dtype=np.float32)
    return Split(one_hot[train.tokens], train.labels), Split(one_hot[test.tokens], test.labels)
  raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
