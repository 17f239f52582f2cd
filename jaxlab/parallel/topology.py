"""Ahead-of-time compilation for TPU slices from a CPU-only machine.

`topology_devices("v5p-128")` returns compile-only TPU devices described by
libtpu, so a `Mesh` over them lets `jax.jit(...).lower(...).compile()` produce
real TPU executables (and their memory footprint) without owning a TPU. Run the
process with JAX_PLATFORMS=cpu: otherwise JAX's own backend start-up probes
libtpu for a local TPU and prints libtpu's complaints before this module can
quiet them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
from jax._src import hardware_utils
from jax.experimental import topologies

_GIB = 2**30


class _Generation(NamedTuple):
  libtpu_prefix: str  # chip name libtpu expects in "v5:4x4x4"
  cores_per_chip: int  # what the N of "<gen>-N" counts per chip (Google Cloud naming)
  hbm_bytes_per_chip: int
  peak_bf16_flops_per_chip: float
  max_chips: int


_GENERATIONS = {
  "v4": _Generation("v4", 2, 32 * _GIB, 275e12, 4096),
  "v5p": _Generation("v5", 2, 95 * _GIB, 459e12, 8960),
  "v5e": _Generation("v5e", 1, 16 * _GIB, 197e12, 256),
  "v6e": _Generation("v6e", 1, 32 * _GIB, 918e12, 256),
}
_ALIASES = {"v5litepod": "v5e"}

# Slices smaller than one 4x4x4 cube (v4/v5p), and every v5e/v6e slice (2D).
_SMALL_3D_GRIDS = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4)}
_2D_GRIDS = {
  1: (1, 1),
  4: (2, 2),
  8: (2, 4),
  16: (4, 4),
  32: (4, 8),
  64: (8, 8),
  128: (8, 16),
  256: (16, 16),
}

_VALID_FORMS = (
  "valid forms: v4-N / v5p-N with N TensorCores (2 per chip: 8, 16, 32, 64 or a multiple "
  "of 128, up to 8192 / 17920), v5e-N (or v5litepod-N) / v6e-N with N chips "
  "(1, 4, 8, 16, 32, 64, 128 or 256)"
)


@dataclasses.dataclass(frozen=True)
class TopologySpec:
  """One TPU slice: what it is (for budgeting) and how libtpu must be asked for it."""

  name: str  # canonical, e.g. "v5e-8" for "v5litepod-8"
  generation: str  # "v4", "v5e", "v5p" or "v6e"
  num_chips: int  # also the number of JAX devices (v4/v5p run their 2 cores as one megacore)
  hbm_bytes_per_chip: int
  peak_bf16_flops_per_chip: float
  topology_name: str  # libtpu chip grid, e.g. "v5:4x4x4"
  chip_config_name: str  # "megacore" (v4, v5p) or "default"
  chips_per_host_bounds: tuple[int, int, int]
  wrap: tuple[bool, bool, bool]  # torus wrap-around links per grid axis


def _cube_grid(num_chips: int) -> tuple[int, int, int]:
  """Most cube-like (a <= b <= c) arrangement of 4x4x4 cubes, as Google Cloud lays out v4/v5p."""
  cubes = num_chips // 64
  shapes = [
    (a, b, cubes // (a * b))
    for a in range(1, cubes + 1)
    for b in range(a, cubes + 1)
    if cubes % (a * b) == 0 and cubes // (a * b) >= b
  ]
  a, b, c = min(shapes, key=lambda s: (s[2], s[1]))
  return 4 * a, 4 * b, 4 * c


def _bad_name(name: str, problem: str) -> ValueError:
  return ValueError(f"invalid TPU topology {name!r}: {problem}; {_VALID_FORMS}")


def parse_topology(name: str) -> TopologySpec:
  """Parses a Google Cloud accelerator name such as "v5p-128", "v5e-8", "v4-32" or "v6e-16"."""
  match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
  if match is None:
    raise _bad_name(name, "expected '<generation>-<count>'")
  generation = _ALIASES.get(match[1], match[1])
  count = int(match[2])
  if count == 0:
    raise _bad_name(name, "the count must be positive")
  if generation not in _GENERATIONS:
    raise _bad_name(name, f"unknown TPU generation {match[1]!r}")
  gen = _GENERATIONS[generation]
  if count % gen.cores_per_chip:
    raise _bad_name(name, f"{generation} counts TensorCores, 2 per chip, so N must be even")
  num_chips = count // gen.cores_per_chip
  if num_chips > gen.max_chips:
    raise _bad_name(name, f"larger than a whole {generation} pod")
  if gen.cores_per_chip == 1:
    if num_chips not in _2D_GRIDS:
      raise _bad_name(name, f"{count} chips is not a {generation} slice size")
    grid = _2D_GRIDS[num_chips]
    chip_config = "default"
    # Slices up to 8 chips are one host; larger ones are 2x2-chip hosts.
    host_bounds = (*grid, 1) if num_chips <= 8 else (2, 2, 1)
    wrap = (num_chips == 256, num_chips >= 128, False)
  else:
    if num_chips in _SMALL_3D_GRIDS:
      grid = _SMALL_3D_GRIDS[num_chips]
    elif num_chips % 64 == 0:
      grid = _cube_grid(num_chips)
    else:
      raise _bad_name(name, f"{count} TensorCores is not a {generation} slice size")
    chip_config = "megacore"
    host_bounds = (2, 2, 1)
    wrap = (num_chips >= 64,) * 3  # full cubes are closed into a torus by the optical switches
  return TopologySpec(
    name=f"{generation}-{count}",
    generation=generation,
    num_chips=num_chips,
    hbm_bytes_per_chip=gen.hbm_bytes_per_chip,
    peak_bf16_flops_per_chip=gen.peak_bf16_flops_per_chip,
    topology_name=f"{gen.libtpu_prefix}:{'x'.join(map(str, grid))}",
    chip_config_name=chip_config,
    chips_per_host_bounds=host_bounds,
    wrap=wrap,
  )


def _libtpu_installed() -> bool:
  path = os.environ.get("TPU_LIBRARY_PATH")
  if path is not None and os.path.isfile(path):
    return True
  return importlib.util.find_spec("libtpu") is not None


@contextlib.contextmanager
def _quiet_libtpu(spec: TopologySpec) -> Iterator[None]:
  """Keeps libtpu's start-up complaints about the missing TPU off the terminal.

  Without a TPU, libtpu cannot learn the accelerator type and worker hostnames
  from the GCE metadata server and logs errors to fd 2 when it loads. On a
  machine without TPU chips we therefore pretend to be a single worker of the
  requested slice (only for this call; the variables are removed after), and
  swallow whatever still reaches fd 2. If the call fails, the swallowed
  text is attached to the exception as a note instead of being lost.
  """
  pretend = {
    "TPU_SKIP_MDS_QUERY": "1",
    "TPU_ACCELERATOR_TYPE": spec.name,
    "TPU_WORKER_HOSTNAMES": "localhost",
    # No chip to guard, so no /tmp/libtpu_lockfile: other processes may AOT-compile too.
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
  }
  added = []
  # A TPU VM keeps its real metadata; elsewhere the user's own settings still win.
  if hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0:
    added = [key for key in pretend if key not in os.environ]
    os.environ.update({key: pretend[key] for key in added})
  sys.stderr.flush()
  saved_fd = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except Exception as e:
      sys.stderr.flush()
      captured.seek(0)
      text = captured.read().decode(errors="replace").strip()
      if text:
        e.add_note(f"libtpu stderr:\n{text}")
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved_fd, 2)
      os.close(saved_fd)
      for key in added:
        os.environ.pop(key, None)


@functools.cache
def _devices(spec: TopologySpec) -> tuple[jax.Device, ...]:
  with _quiet_libtpu(spec):
    desc = topologies.get_topology_desc(
      platform="tpu",
      topology_name=spec.topology_name,
      chip_config_name=spec.chip_config_name,
      chips_per_host_bounds=spec.chips_per_host_bounds,
      num_slices=1,
      wrap=spec.wrap,
    )
  return tuple(desc.devices)


def topology_devices(name: str) -> list[jax.Device]:
  """Compile-only TPU devices of one slice, for meshes used to AOT-compile on a CPU machine.

  The devices come from libtpu's topology description (nothing else here touches
  libtpu); they can be lowered and compiled for but hold no memory and run
  nothing. Cached per slice, so "v5e-8" and "v5litepod-8" share devices.
  """
  spec = parse_topology(name)
  if not _libtpu_installed():
    raise RuntimeError(
      f"TPU topology {name!r} needs libtpu, which is not installed: pip install jaxlab[tpu]"
    )
  return list(_devices(spec))


def compiled_memory_per_device(compiled: jax.stages.Compiled) -> int:
  """HBM bytes one device needs to run `compiled`, from XLA's memory analysis.

  Formula: argument + output + temp - alias. Donated inputs that XLA reuses for
  outputs are counted in both argument and output sizes, and alias_size is
  exactly that overlap, so subtracting it counts each such buffer once. The
  executable's own code (generated_code_size) is left out.
  Sizes are per device because an SPMD program is the same on every device.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    raise ValueError("memory analysis is unavailable for this compiled function's backend")
  return (
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    + stats.temp_size_in_bytes
    - stats.alias_size_in_bytes
  )


def fit_report(bytes_per_device: int, topology: str) -> dict[str, Any]:
  """What a dry run adds for a TPU slice: the topology, each chip's HBM, and whether the
  compiled step's per-device bytes fit it ({} without a topology)."""
  if not topology:
    return {}
  hbm = parse_topology(topology).hbm_bytes_per_chip
  return {"topology": topology, "hbm_per_device": hbm, "fits": bytes_per_device <= hbm}
