"""Test-wide setup: 8 fake CPU devices and a persistent compilation cache, before jax loads."""

import os
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

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
  config.addinivalue_line(
    "markers",
    "seqio: needs the seqio extra (TensorFlow); left out by default (addopts), run by "
    "`make test-seqio`, which installs the extra",
  )


def pytest_collection_modifyitems(config, items):
  """Tests marked `needs_libtpu` run wherever libtpu is installed (CI installs it) and elsewhere
  skip with the reason, which `-rs` prints in the summary."""
  if _libtpu_installed():
    return
  skip = pytest.mark.skip(reason="needs libtpu to compile for a TPU slice: pip install -e '.[tpu]'")
  for item in items:
    if "needs_libtpu" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def gcs_environment():
  """A local GCS server for this test process (tests/gcs_emulator.py): the client environment,
  set in os.environ for the session; tests write under their own gs://jaxlab-test/<name>/."""
  from tests.gcs_emulator import local_gcs

  with local_gcs() as env:
    yield env


@pytest.fixture
def bucket_dir(gcs_environment, request):
  """A fresh gs:// directory for one test."""
  import re

  from tests.gcs_emulator import BUCKET

  return f"gs://{BUCKET}/{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}"
