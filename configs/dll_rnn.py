"""DLL study, character RNN: next-character prediction on the reference manual text that ships
with Python's standard library (jaxlab.data.char_tasks), tanh RNN with 128 hidden units,
sequences of 32 characters, with the bp, fa, dll and dll_fa baselines. Metric: next-character
test accuracy on the held-out tail of the text (`test_accuracy` in summary.json).

Args: a method name and key=value items, e.g. `configs/dll_rnn.py:dll`, `:dll_fa,seed=1`.

The paper's RNN code uses the Theta sign of its Eq. 9 (theta_sign=-1); see THETA_SIGN for the one
used here. Peak learning rates were chosen per method on a 15% validation split of the training
windows (3 seeds); see LEARNING_RATES.
"""

import ml_collections

from jaxlab.experiments.dll import base_config, parse_method_arg, text_data_config

LEARNING_RATES = {"bp": 3e-3, "fa": 3e-3, "dll": 3e-3, "dll_fa": 3e-3}
THETA_SIGN = -1.0


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, epochs=20)
  config = base_config(args.method, args.seed)
  config.rule.theta_sign = THETA_SIGN
  config.optimizer.lr = LEARNING_RATES[args.method]
  config.train.epochs = args.epochs
  config.data = text_data_config(seq_len=32, max_chars=100_000)
  config.model = ml_collections.ConfigDict(dict(kind="rnn", hidden=128))
  return config
