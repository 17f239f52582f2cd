"""Spikformer with the spiking patch-splitting stem on scikit-learn's 8x8 digits pasted at random
offsets onto a 16x16 canvas (2 training copies per image, 8 test copies: 2,872 test images).
Where a digit lies carries no information, how its strokes lie relative to each other does.
Every encoding runs on the same SPS stem (a 4x4 token grid). Metric: test accuracy.

Args (`configs/spiking_canvas.py:pe=conv_gray2d,seed=1`): pe (none|conv|gray2d|conv_gray2d|log),
seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="conv_gray2d", seed=0, epochs=10)
  config = base_config("canvas", pe=args.pe, stem="sps", surrogate="sigmoid", surrogate_alpha=4.0)
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=64)
  return config
