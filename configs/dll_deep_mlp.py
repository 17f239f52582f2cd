"""DLL study, deep narrow MLP: 64-(64 x 7)-10 tanh on scikit-learn digits (docs/dll.md), with
every rule (bp, fa, fa_ref, dll, dll_fa), to see how the error signal holds up through depth.

Args: a method name and key=value items, e.g. `configs/dll_deep_mlp.py:dll`,
`configs/dll_deep_mlp.py:fa_ref,seed=1,split=2`. `split` picks one of the stratified train/test
splits of digits (data.split_seed; 80/20 per class), `seed` the initialization and batch order.
`data=mnist|fashion_mnist` trains the same 64-wide stack on 28x28 images from data.idx_dir (the
IDX files those sets ship as), data.npz_path or a prepared tfds copy, on their fixed train/test
split (`split` is then unused), with the digits rates below.

Peak learning rates (Adam, linear decay to 0; plain SGD for fa_ref) were chosen on a 15%
validation split of the split-0 train set, 50 epochs, 1 seed (validation accuracy %):
bp {3e-3: 90.3, 1e-2: 94.4, 3e-2: 7.9}; fa {1e-3: 91.2, 3e-3: 93.5, 1e-2: 87.5, 3e-2: 40.7};
dll {1e-3: 75.9, 3e-3: 88.4, 1e-2: 69.0, 3e-2: 7.9}; dll_fa {1e-3: 82.4, 3e-3: 85.2, 1e-2: 58.8,
3e-2: 7.9}; fa_ref {0.1: 88.4, 0.3: 94.4, 1: 84.7}. One seed on 216 validation digits: differences
of a point or two are noise.
"""

import ml_collections

from jaxlab.experiments.dll import base_config, image_data_config, parse_method_arg

LEARNING_RATES = {"bp": 1e-2, "fa": 3e-3, "dll": 3e-3, "dll_fa": 3e-3, "fa_ref": 0.3}
DEPTH = 7
WIDTH = 64


def get_config(arg=None):
  args = parse_method_arg(arg, seed=0, split=0, epochs=50, data="digits")
  config = base_config(args.method, args.seed)
  config.optimizer.lr = LEARNING_RATES[args.method]
  config.train.epochs = args.epochs
  config.data = image_data_config(args.data)
  config.data.split_seed = args.split
  config.model = ml_collections.ConfigDict(dict(kind="mlp", hidden=(WIDTH,) * DEPTH))
  return config
