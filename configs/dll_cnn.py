"""DLL study, CNN on scikit-learn digits (docs/dll.md): conv32-maxpool-conv64-maxpool-conv32-
avgpool-128-10, tanh, 3x3 SAME convs (8x8 -> 4x4 -> 2x2 -> 1x1), with the bp, fa, fa_ref, dll
and dll_fa baselines.

Args: a method name and key=value items, e.g. `configs/dll_cnn.py:dll`, `:bp,seed=1`,
`:data=cifar10` (data.npz_path or a prepared tfds copy), which switches to the paper's
conv64-pool-conv128-pool-conv64-avgpool-256-10 net (batch 64; the paper used lr 5e-5 there, not
checked here, so set --config.optimizer.lr to taste).

Peak learning rates were chosen per method on a 15% validation split of the digits train set
(30 epochs, 3 seeds, from {1e-3, 3e-3, 1e-2}); see LEARNING_RATES. fa_ref (plain SGD): 1 seed
from {0.1, 0.3, 1}.
"""

import ml_collections

from jaxlab.experiments.dll import base_config, image_data_config, parse_method_arg

# Validation accuracy (%, mean of 3 seeds) at the chosen rate: bp 98.9, fa 98.9, dll 98.5,
# dll_fa 98.5. fa_ref (1 seed): 45.4 at 0.1, 93.5 at 0.3, 61.6 at 1.
LEARNING_RATES = {"bp": 3e-3, "fa": 1e-2, "dll": 1e-2, "dll_fa": 1e-2, "fa_ref": 0.3}


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, epochs=30, data="digits")
  config = base_config(args.method, args.seed)
  config.optimizer.lr = LEARNING_RATES[args.method]
  config.train.epochs = args.epochs
  config.data = image_data_config(args.data)
  config.model = ml_collections.ConfigDict(
    dict(kind="cnn", channels=(32, 64, 32), pools=("max", "max", "avg"), hidden=(128,))
  )
  if args.data != "digits":
    config.model.update(channels=(64, 128, 64), hidden=(256,))
  return config
