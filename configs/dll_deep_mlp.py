"""DLL study, deep narrow MLP: 64-(64 x 7)-10 tanh on scikit-learn digits (docs/dll.md), with
every rule (bp, fa, fa_ref, dll, dll_fa), to see how the error signal holds up through depth.

Args: a method name and key=value items, e.g. `configs/dll_deep_mlp.py:dll`,
`configs/dll_deep_mlp.py:fa_ref,seed=1,split=2`, `epochs=N` (default 50 on digits). `split`
picks one of the stratified train/test splits of digits (data.split_seed; 80/20 per class), `seed`
the initialization and batch order.
`data=mnist|fashion_mnist` trains the same 64-wide stack on 28x28 images from data.idx_dir (the
IDX files those sets ship as), data.npz_path or a prepared tfds copy, on their fixed train/test
split (`split` is then unused), 10 epochs, with the 28x28 rates below.

Peak learning rates (Adam, linear decay to 0; plain SGD for fa_ref) were chosen on a 15%
validation split of the split-0 train set, 50 epochs, 1 seed (validation accuracy %):
bp {3e-3: 90.3, 1e-2: 94.4, 3e-2: 7.9}; fa {1e-3: 91.2, 3e-3: 93.5, 1e-2: 87.5, 3e-2: 40.7};
dll {1e-3: 75.9, 3e-3: 88.4, 1e-2: 69.0, 3e-2: 7.9}; dll_fa {1e-3: 82.4, 3e-3: 85.2, 1e-2: 58.8,
3e-2: 7.9}; fa_ref {0.1: 88.4, 0.3: 94.4, 1: 84.7}. One seed on 216 validation digits: differences
of a point or two are noise.

28x28 rates were chosen the same way on a 15% validation split of Fashion-MNIST's training set
(9,000 images), 10 epochs, seed 0, from Adam {1e-4, 3e-4, 1e-3, 3e-3} and SGD {0.01, 0.03, 0.1,
0.3}: bp {78.6, 83.8, 88.6, 86.5}; fa {83.3, 86.9, 88.0, 86.4}; dll {73.2, 79.4, 78.6, 76.4};
dll_fa {72.7, 78.6, 79.3, 57.5}; fa_ref {77.1, 82.6, 85.6, 85.4}. The digits rates do not carry
over: bp at 1e-2 reaches only 30-54% there.
"""

import ml_collections

from jaxlab.config import ConfigError
from jaxlab.experiments.dll import base_config, image_data_config, parse_method_arg

LEARNING_RATES = {"bp": 1e-2, "fa": 3e-3, "dll": 3e-3, "dll_fa": 3e-3, "fa_ref": 0.3}
LEARNING_RATES_28X28 = {"bp": 1e-3, "fa": 1e-3, "dll": 3e-4, "dll_fa": 1e-3, "fa_ref": 0.1}
# 50 epochs of digits are 1,100 steps; 10 of MNIST-sized sets are 9,370.
EPOCHS = {"digits": 50, "mnist": 10, "fashion_mnist": 10}
DEPTH = 7
WIDTH = 64


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, split=0, epochs=0, data="digits")
  if args.data not in EPOCHS:
    raise ConfigError(f"data={args.data!r}: choose one of {', '.join(EPOCHS)}")
  config = base_config(args.method, args.seed)
  rates = LEARNING_RATES if args.data == "digits" else LEARNING_RATES_28X28
  config.optimizer.lr = rates[args.method]
  config.train.epochs = args.epochs or EPOCHS[args.data]
  config.data = image_data_config(args.data)
  config.data.split_seed = args.split
  config.model = ml_collections.ConfigDict(dict(kind="mlp", hidden=(WIDTH,) * DEPTH))
  return config
