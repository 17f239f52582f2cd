"""Device meshes from config: axes (data, fsdp, tensor), -1 meaning "the rest", Auto axis types."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils

from jaxlab.config import ConfigError, check_known_keys

MESH_AXES = ("data", "fsdp", "tensor")


def default_mesh_config() -> ml_collections.ConfigDict:
  """Data parallel over every device: the `mesh` section every study starts from."""
  return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the config's axis sizes against the device count (at most one -1)."""
  check_known_keys(mesh_cfg, default_mesh_config(), "mesh")
  sizes = [int(mesh_cfg[axis]) for axis in MESH_AXES]
  free = [i for i, size in enumerate(sizes) if size == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  if any(size == 0 or size < -1 for size in sizes):
    raise ConfigError(f"mesh: axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
  fixed = math.prod(size for size in sizes if size != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(
        f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {num_devices} available devices"
      )
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes) != num_devices:
    raise ConfigError(
      f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
      f"{num_devices} available"
    )
  return tuple(sizes)


def build_mesh(
  mesh_cfg: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
  """A Mesh with Auto axis types (what Flax logical partitioning expects)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  if devices and devices[0].platform != "cpu" and len(devices) > 1:
    try:
      device_grid = mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
      device_grid = np.asarray(devices).reshape(shape)
  else:
    device_grid = np.asarray(devices).reshape(shape)
  return jax.sharding.Mesh(
    device_grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  )


def default_logical_rules() -> tuple[tuple[str, object], ...]:
  """Logical axis -> mesh axis rules (MaxText style). Parameters and activations use
  different names so that FSDP shards weights on `embed` while activations stay batch-sharded."""
  return (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_head_dim", None),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
  )


def rules_from_config(rules: Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
  """Logical axis rules as flax wants them; rules read back from JSON arrive as nested lists."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)


@contextlib.contextmanager
def mesh_context(mesh: jax.sharding.Mesh, rules: Sequence[tuple[str, Any]]) -> Iterator[None]:
  """Mesh + logical rules: needed while tracing anything that uses logical constraints."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def batch_sharding(
  mesh: jax.sharding.Mesh, rules: Sequence[tuple[str, Any]]
) -> jax.sharding.NamedSharding:
  """Sharding of every batch array: rows over the mesh axes of `act_batch`, the rest whole."""
  return nn.logical_to_mesh_sharding(jax.sharding.PartitionSpec("act_batch"), mesh, rules)
