"""Spikformer forecasting the next yearly sunspot number (statsmodels' bundled series) from a
32-year window. Metrics: test R^2 (headline) and RSE.

Args (`configs/spiking_forecast.py:pe=log,seed=1`): pe (none|conv|gray|log), seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="gray", seed=0, epochs=60)
  config = base_config("forecast", pe=args.pe, surrogate="arctan", surrogate_alpha=2.0)
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=32, eval_every=10)
  config.checkpoint.every = 20
  return config
