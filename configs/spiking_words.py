"""Spikformer on word-order pairs from the Python reference manual text (pydoc_data.topics):
8-word windows over the 63 most frequent words (+ one out-of-vocabulary id), as written or with
two adjacent words swapped (SentEval's bigram shift). Both classes have the same token multisets,
so without a positional encoding the model is exactly at chance; 25% of the test windows swap two
equal ids, so no model exceeds 0.873 (`best_accuracy` in jaxlab.data.word_order). Metric: test
accuracy on 3,214 examples (1,607 windows, each as written and swapped).

Args (`configs/spiking_words.py:pe=log,seed=1`): pe (none|conv|gray|log), seed, epochs.
"""

from jaxlab.config import parse_arg
from jaxlab.experiments.spiking import base_config


def get_config(arg=None):
  args = parse_arg(arg, pe="log", seed=0, epochs=8)
  config = base_config("words", pe=args.pe, surrogate="arctan", surrogate_alpha=2.0)
  config.seed = args.seed
  config.train.update(epochs=args.epochs, batch_size=64)
  return config
