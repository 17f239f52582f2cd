"""Per-host batches become sharded global jax.Arrays."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab.data.global_batch import to_global_batch
from jaxlab.data.pipeline import build_lm_iterator, default_data_config


def test_to_global_batch_shards_rows_over_devices():
  devices = jax.devices()
  mesh = Mesh(np.array(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  cfg = default_data_config()
  cfg.synthetic_num_docs = 200
  local = next(build_lm_iterator(cfg, seq_len=32, global_batch=8, split="train", seed=0))
  global_batch = to_global_batch(local, sharding)
  assert global_batch.keys() == local.keys()
  for name, array in global_batch.items():
    assert array.shape == local[name].shape and array.dtype == local[name].dtype
    assert array.sharding == sharding
    assert len(array.addressable_shards) == len(devices)
    np.testing.assert_array_equal(np.asarray(array), local[name])
