"""Compile checks from CPU: Mosaic kernels through libtpu for a TPU topology, Triton lowering
for CUDA, and the target switch."""

import pytest

from jaxlab.kernels.aot import aot_tpu_check, gpu_lowering_check, kernel_cases
from jaxlab.kernels.dispatch import resolve_target

ALL_KERNELS = [name for name, _, _ in kernel_cases("tpu")]


@pytest.mark.needs_libtpu
# conftest's persistent cache holds these TPU executables, but a compile-only client cannot load
# them back; jax then warns and compiles again.
@pytest.mark.filterwarnings("ignore:Error reading persistent compilation cache")
def test_lif_compiles_for_tpu_v5e():
  # The cheapest kernel pair; `python -m jaxlab.bench kernels --aot_tpu v5e-8` compiles all.
  results = aot_tpu_check("v5e-8", only=("lif_multistep fwd", "lif_multistep bwd"))
  assert [(name, ok) for name, ok, _ in results] == [
    ("lif_multistep fwd", True),
    ("lif_multistep bwd", True),
  ], results


def test_every_kernel_lowers_to_triton():
  results = gpu_lowering_check()
  assert [name for name, _, _ in results] == ALL_KERNELS
  assert all(ok for _, ok, _ in results), [r for r in results if not r[1]]


def test_target_switch(monkeypatch):
  assert resolve_target(None) == "auto"
  monkeypatch.setenv("JAXLAB_KERNELS", "tpu-interpret")
  assert resolve_target(None) == "tpu-interpret"
  assert resolve_target("reference") == "reference"
  with pytest.raises(ValueError, match="unknown kernel target"):
    resolve_target("cuda")
