"""AOT compilation for TPU slices on the CPU test machine, through libtpu's topology description."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxlab
from jaxlab.parallel.topology import (
  TopologySpec,
  _quiet_libtpu,
  compiled_memory_per_device,
  fit_report,
  parse_topology,
  topology_devices,
)

GIB = 2**30


def auto_mesh(devices: list, shape: tuple[int, ...], axes: tuple[str, ...]) -> Mesh:
  return Mesh(np.array(devices).reshape(shape), axes, axis_types=(AxisType.Auto,) * len(axes))


@pytest.mark.parametrize(
  "name, generation, chips, grid, hbm_gib, flops",
  [
    ("v5p-128", "v5p", 64, "v5:4x4x4", 95, 459e12),
    ("v5p-8", "v5p", 4, "v5:2x2x1", 95, 459e12),
    ("v5p-1152", "v5p", 576, "v5:4x12x12", 95, 459e12),
    ("v5p-17920", "v5p", 8960, "v5:16x20x28", 95, 459e12),
    ("v4-32", "v4", 16, "v4:2x2x4", 32, 275e12),
    ("v4-4096", "v4", 2048, "v4:8x16x16", 32, 275e12),
    ("v5e-8", "v5e", 8, "v5e:2x4", 16, 197e12),
    ("v5litepod-256", "v5e", 256, "v5e:16x16", 16, 197e12),
    ("v6e-16", "v6e", 16, "v6e:4x4", 32, 918e12),
    ("v6e-1", "v6e", 1, "v6e:1x1", 32, 918e12),
  ],
)
def test_parse_topology_table(name, generation, chips, grid, hbm_gib, flops):
  spec = parse_topology(name)
  assert (spec.generation, spec.num_chips, spec.topology_name) == (generation, chips, grid)
  assert spec.hbm_bytes_per_chip == hbm_gib * GIB
  assert spec.peak_bf16_flops_per_chip == flops
  assert spec.name == f"{generation}-{name.split('-')[1]}"


def test_topology_spec_is_frozen_and_host_layout():
  spec = parse_topology("v5e-8")
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.num_chips = 4  # type: ignore[misc]
  assert isinstance(spec, TopologySpec)
  assert spec.chips_per_host_bounds == (2, 4, 1)  # v5litepod-8 is a single host
  assert parse_topology("v5e-16").chips_per_host_bounds == (2, 2, 1)
  assert parse_topology("v5p-128").wrap == (True, True, True)
  assert parse_topology("v5p-64").wrap == (False, False, False)


@pytest.mark.parametrize(
  "name, problem",
  [
    ("", "expected '<generation>-<count>'"),
    ("v5p", "expected '<generation>-<count>'"),
    ("tpu-8", "expected '<generation>-<count>'"),
    ("v7-8", "unknown TPU generation 'v7'"),
    ("v5p-0", "must be positive"),
    ("v5p-7", "must be even"),
    ("v5p-100", "not a v5p slice size"),
    ("v5e-12", "not a v5e slice size"),
    ("v6e-512", "larger than a whole v6e pod"),
  ],
)
def test_parse_topology_rejects_bad_names(name, problem):
  with pytest.raises(ValueError, match="valid forms: v4-N") as info:
    parse_topology(name)
  message = str(info.value)
  assert problem in message and repr(name) in message and "\n" not in message


@pytest.mark.needs_libtpu
def test_topology_devices_are_cached_tpu_devices():
  devices = topology_devices("v5e-8")
  assert len(devices) == 8 and {d.platform for d in devices} == {"tpu"}
  assert devices[0].device_kind == "TPU v5 lite"
  again = topology_devices("v5litepod-8")
  assert again == devices and all(a is b for a, b in zip(again, devices))
  again.clear()  # callers get their own list
  assert len(topology_devices("v5e-8")) == 8
  assert jax.default_backend() == "cpu"
  assert len(topology_devices("v5p-128")) == 64


def test_missing_libtpu_asks_for_the_tpu_extra(monkeypatch):
  monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
  monkeypatch.setitem(sys.modules, "libtpu", None)  # makes importlib find no libtpu
  with pytest.raises(RuntimeError, match=r"pip install jaxlab\[tpu\]"):
    topology_devices("v4-8")


@pytest.mark.needs_libtpu
def test_loading_libtpu_prints_nothing():
  code = (
    "from jaxlab.parallel.topology import topology_devices;"
    "assert len(topology_devices('v6e-4')) == 4"
  )
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  repo_root = pathlib.Path(jaxlab.__file__).parents[1]
  result = subprocess.run(
    [sys.executable, "-c", code],
    env=env,
    cwd=repo_root,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout == "" and result.stderr == ""


def _data_parallel_matmul_bytes(mesh: Mesh, x_spec: P) -> int:
  x_sharding, w_sharding = NamedSharding(mesh, x_spec), NamedSharding(mesh, P())
  step = jax.jit(
    lambda x, w: jnp.tanh(x @ w), in_shardings=(x_sharding, w_sharding), out_shardings=x_sharding
  )
  compiled = step.lower(
    jax.ShapeDtypeStruct((8192, 1024), jnp.bfloat16),
    jax.ShapeDtypeStruct((1024, 1024), jnp.bfloat16),
  ).compile()
  return compiled_memory_per_device(compiled)


@pytest.mark.needs_libtpu
@pytest.mark.parametrize("name, shape", [("v5e-8", (8,)), ("v5p-128", (64,))])
def test_sharding_shrinks_compiled_memory_per_device(name, shape):
  mesh = auto_mesh(topology_devices(name), shape, ("data",))
  replicated = _data_parallel_matmul_bytes(mesh, P())
  sharded = _data_parallel_matmul_bytes(mesh, P("data", None))
  x_bytes, w_bytes = 8192 * 1024 * 2, 1024 * 1024 * 2
  # Replicated, every device holds all of x, w and the output (x-sized): 34 MiB.
  assert 2 * x_bytes + w_bytes <= replicated < parse_topology(name).hbm_bytes_per_chip
  # Sharded over n devices: 2 * x / n + w, plus scratch.
  assert 2 * x_bytes / len(mesh.devices.flat) + w_bytes <= sharded < replicated / 4


@pytest.mark.needs_libtpu
def test_donated_buffers_count_once():
  mesh = auto_mesh(topology_devices("v5e-8"), (8,), ("data",))
  sharding = NamedSharding(mesh, P("data", None))
  shape = jax.ShapeDtypeStruct((8192, 1024), jnp.float32)
  per_device = 8192 * 1024 * 4 // 8

  def bytes_for(donate: tuple[int, ...]) -> tuple[int, object]:
    step = jax.jit(
      lambda x: x * 2.0, in_shardings=sharding, out_shardings=sharding, donate_argnums=donate
    )
    compiled = step.lower(shape).compile()
    return compiled_memory_per_device(compiled), compiled.memory_analysis()

  kept, kept_stats = bytes_for(())
  donated, donated_stats = bytes_for((0,))
  assert kept_stats.alias_size_in_bytes == 0 and donated_stats.alias_size_in_bytes == per_device
  assert kept - donated == per_device


class _MLP(nn.Module):
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(
      self.hidden, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
    )(x)
    x = nn.gelu(x)
    return nn.Dense(
      self.out, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), ("model", None))
    )(x)


@pytest.mark.needs_libtpu
def test_flax_mlp_train_step_compiles_for_v5p_128():
  mesh = auto_mesh(topology_devices("v5p-128"), (16, 4), ("data", "model"))
  model = _MLP(hidden=2048, out=512)
  batch = jax.ShapeDtypeStruct((256, 512), jnp.bfloat16)
  boxed = jax.eval_shape(model.init, jax.random.key(0), batch)
  params = nn.unbox(boxed)
  param_shardings = jax.tree.map(
    lambda spec: NamedSharding(mesh, spec), nn.get_partition_spec(boxed)
  )
  batch_sharding = NamedSharding(mesh, P("data", None))

  def train_step(params, x, y):
    def loss_fn(p):
      return jnp.mean((model.apply(p, x) - y).astype(jnp.float32) ** 2)

    grads = jax.grad(loss_fn)(params)
    return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

  step = jax.jit(
    train_step,
    in_shardings=(param_shardings, batch_sharding, batch_sharding),
    out_shardings=param_shardings,
    donate_argnums=0,
  )
  compiled = step.lower(params, batch, batch).compile()
  assert "all-reduce" in compiled.as_text()  # gradients are summed over "data"
  param_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(params))
  per_device = compiled_memory_per_device(compiled)
  # Kernels are split 4 ways over "model" and the params are donated: each device holds a
  # quarter of them (plus activations and biases), well below a replicated copy.
  assert param_bytes / 4 <= per_device < param_bytes


def test_libtpu_noise_is_kept_for_failures(capfd):
  with pytest.raises(RuntimeError) as info:
    with _quiet_libtpu(parse_topology("v5e-8")):
      os.write(2, b"libtpu says why\n")
      raise RuntimeError("topology failed")
  assert "libtpu says why" in "".join(info.value.__notes__)
  os.write(2, b"visible again\n")
  assert capfd.readouterr().err == "visible again\n"


def test_fit_report_compares_bytes_with_the_chips_hbm():
  hbm = parse_topology("v5p-128").hbm_bytes_per_chip
  assert fit_report(hbm, "v5p-128") == {"topology": "v5p-128", "hbm_per_device": hbm, "fits": True}
  assert fit_report(hbm + 1, "v5p-128")["fits"] is False
  assert fit_report(10**12, "") == {}
