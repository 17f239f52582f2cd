"""Multi-host bring-up: `jax.distributed.initialize` when the environment says there are peers."""

from __future__ import annotations

import os

import jax

from jaxlab.cli import first_line

# Environment variables whose presence (with more than one process) means a multi-process job.
_PROCESS_COUNT_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES")


def looks_multiprocess() -> bool:
  """True on a SLURM/MPI job with several tasks, a multi-host TPU slice or an explicit
  coordinator."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if any(int(os.environ.get(var, "1") or 1) > 1 for var in _PROCESS_COUNT_VARS):
    return True
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize(mode: str = "auto") -> None:
  """Initializes the JAX distributed runtime for mode on|auto (auto: only when multi-process).

  JAX detects the coordinator on TPU pods, SLURM and Open MPI; elsewhere set
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. Failures raise RuntimeError
  with one line that says what to check.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"--distributed must be auto, on or off, got {mode!r}")
  if mode == "off" or (mode == "auto" and not looks_multiprocess()):
    return
  if jax.config.jax_platforms and "cpu" in jax.config.jax_platforms.split(","):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if os.environ.get("JAX_NUM_PROCESSES"):
    kwargs = dict(
      coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
      process_id=int(os.environ["JAX_PROCESS_ID"]),
    )
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError, KeyError) as e:
    raise RuntimeError(
      f"multi-host initialization failed ({first_line(e)}); check that every host "
      "runs the same command and can reach the coordinator"
    ) from None
