"""Spikformer on the generated relative-distance task: are the two markers near (1-2 apart) or
far (8 or more apart)? Only a positional encoding lets it beat chance. Metric: test accuracy.

Args (`configs/spiking_order.py:pe=gray,seed=1`): pe (none|conv|gray|log), seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="gray", seed=0, epochs=15)
  config = base_config("order", pe=args.pe, surrogate="arctan", surrogate_alpha=2.0)
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=64)
  return config
