"""Test-wide setup: 8 fake CPU devices and a persistent compilation cache, before jax loads."""

import os
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402

# Many tests compile the same small programs; a per-session cache makes the repeats cheap.
jax.config.update(
  "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "jaxlab_test_compile_cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _libtpu_installed() -> bool:
  import importlib.util

  return importlib.util.find_spec("libtpu") is not None


def pytest_configure(config):
  config.addinivalue_line(
    "markers", "needs_libtpu: compiles for a TPU slice through libtpu (the `tpu` extra)"
  )
  config.addinivalue_line(
    "markers", "slow: minutes each; left out by default (addopts), run by `make test-slow`"
  )


def pytest_collection_modifyitems(config, items):
  """Tests marked `needs_libtpu` run wherever libtpu is installed (CI installs it) and elsewhere
  skip with the reason, which `-rs` prints in the summary."""
  if _libtpu_installed():
    return
  import pytest

  skip = pytest.mark.skip(reason="needs libtpu to compile for a TPU slice: pip install -e '.[tpu]'")
  for item in items:
    if "needs_libtpu" in item.keywords:
      item.add_marker(skip)
