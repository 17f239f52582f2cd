"""Spikformer forecasting monthly El Nino sea surface temperatures (statsmodels' bundled series,
1950-2010): the next 3 months from a 32-month window, test on the last 20% of the record.
Metrics: test R^2 averaged over the horizons (headline) and RSE.

Args (`configs/spiking_forecast.py:pe=log,seed=1`): pe (none|conv|gray|log), seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="gray", seed=0, epochs=30)
  config = base_config("forecast", pe=args.pe, surrogate="arctan", surrogate_alpha=2.0, head="mean")
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=32, eval_every=10)
  config.checkpoint.every = 10
  return config
