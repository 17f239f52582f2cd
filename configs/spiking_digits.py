"""Spikformer on scikit-learn's 8x8 digits cut into 2x2 patches (a 4x4 token grid); compares
1D Gray codes of the raster index with 2D row/column codes. Metric: test accuracy.

Args (`configs/spiking_digits.py:pe=gray2d,seed=1`): pe (none|conv|gray|gray2d|log), seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="gray2d", seed=0, epochs=20)
  config = base_config("digits", pe=args.pe, surrogate="sigmoid", surrogate_alpha=4.0)
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=32)
  return config
