"""DLL study, character RNN: next-character prediction on the reference manual text that ships
with Python's standard library (jaxlab.data.char_tasks), tanh RNN with 128 hidden units,
sequences of 32 characters, with the bp, fa, fa_ref, dll and dll_fa baselines. Metric:
next-character test accuracy on the held-out tail of the text (`test_accuracy` in summary.json).

Args: a method name and key=value items, e.g. `configs/dll_rnn.py:dll`, `:dll_fa,seed=1`.

Equal tuning budget (docs/dll.md): every rule got 9 settings on a 15% validation split of the
training windows (20 epochs, seed 0; next-character validation accuracy %), 3 peak rates x 3
values of its own knob (bp: 3 rates only). Adam rates {3e-3, 1e-2, 3e-2}; fa_ref's plain SGD
{0.1, 0.3, 1}. The knob is rule.feedback_scale {0.3, 1, 3} for the fixed-feedback rules (fa,
dll_fa, fa_ref) and Theta's rate as a fraction of lr {0.1, 0.01, 0.001} for dll (Theta sign +1,
chosen earlier over -1: 50.3 vs 46.7 at lr/100). Best per rule, used below: bp 58.4 (1e-2),
dll 51.0 (1e-2, lr/100), dll_fa 50.6 (3e-2, scale 0.3), fa 49.0 (3e-2, scale 0.3), fa_ref 32.8
(SGD 1.0, scale 0.3). Theta at lr/10 collapses DLL to 18-24 at every rate: under Adam, Theta
moves by about its rate every step however small its update signal.
"""

import ml_collections

from jaxlab.experiments.dll import base_config, parse_method_arg, text_data_config

LEARNING_RATES = {"bp": 1e-2, "fa": 3e-2, "dll": 1e-2, "dll_fa": 3e-2, "fa_ref": 1.0}
FEEDBACK_SCALES = {"fa": 0.3, "dll_fa": 0.3, "fa_ref": 0.3}
THETA_SIGN = 1.0
THETA_LR_RATIO = 0.01


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, epochs=20)
  config = base_config(args.method, args.seed)
  config.rule.theta_sign = THETA_SIGN
  config.optimizer.theta_lr_ratio = THETA_LR_RATIO
  config.optimizer.lr = LEARNING_RATES[args.method]
  config.rule.feedback_scale = FEEDBACK_SCALES.get(args.method, 1.0)
  config.train.epochs = args.epochs
  config.data = text_data_config(seq_len=32, max_chars=100_000)
  config.model = ml_collections.ConfigDict(dict(kind="rnn", hidden=128))
  return config
