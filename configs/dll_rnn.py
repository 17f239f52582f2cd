"""DLL study, character RNN: next-character prediction on the reference manual text that ships
with Python's standard library (jaxlab.data.char_tasks), tanh RNN with 128 hidden units,
sequences of 32 characters, with the bp, fa, fa_ref, dll and dll_fa baselines. Metric:
next-character test accuracy on the held-out tail of the text (`test_accuracy` in summary.json).

Args: a method name and key=value items, e.g. `configs/dll_rnn.py:dll`, `:dll_fa,seed=1`.

Peak learning rates, the Theta sign and Theta's rate were chosen on a 15% validation split of the
training windows (20 epochs, 3 seeds; next-character accuracy %): bp 58.2 (lr 1e-2; 48.8 at
3e-3, 41.4 at 3e-2), fa 48.4, dll_fa 48.9 (1e-2). DLL with Theta's rate at the MLP/CNN default
of lr/10 does worse than frozen Theta: 39.0 with the paper's sign -1, 26.5 with +1 (best lr
each); at lr/100 it gives 46.7 (-1) and 50.3 (+1), at lr/1000 48.7 (+1). A likely cause: under Adam,
Theta moves by about its rate every step however small its update signal, while the reference
RNN code uses plain SGD, where Theta's steps shrink with the errors.
fa_ref (plain SGD, 1 seed) from {3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3}: 2.5, 2.5, 3.0,
15.7, 16.2, 22.6, 32.0, 14.3, 10.5; at 0.3, rule.feedback_scale 0.3 and 3 give 26.8 and 23.2.
"""

import ml_collections

from jaxlab.experiments.dll import base_config, parse_method_arg, text_data_config

LEARNING_RATES = {"bp": 1e-2, "fa": 1e-2, "dll": 1e-2, "dll_fa": 1e-2, "fa_ref": 0.3}
THETA_SIGN = 1.0
THETA_LR_RATIO = 0.01


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, epochs=20)
  config = base_config(args.method, args.seed)
  config.rule.theta_sign = THETA_SIGN
  config.optimizer.theta_lr_ratio = THETA_LR_RATIO
  config.optimizer.lr = LEARNING_RATES[args.method]
  config.train.epochs = args.epochs
  config.data = text_data_config(seq_len=32, max_chars=100_000)
  config.model = ml_collections.ConfigDict(dict(kind="rnn", hidden=128))
  return config
