"""--dry_run: build and compile a run abstractly (nothing allocated) and report what it needs.

With `config.topology` naming a TPU slice (e.g. v5p-128), the step is compiled ahead of time for
that topology through libtpu on this machine, and the per-chip bytes are compared with the
chip's HBM: `fits` is bytes_per_device <= hbm_per_device.
"""

from __future__ import annotations

import logging
import json
import os
import time
from typing import Any

import jax
import ml_collections

from jaxlab.models.transformer import count_params
from jaxlab.parallel.topology import compiled_memory_per_device, parse_topology, topology_devices
from jaxlab.train.flops import train_flops_per_token
from jaxlab.train.setup import build_setup
from jaxlab.train.state import with_shardings

logger = logging.getLogger(__name__)


def dry_run_lm(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles train and eval steps for `config` and writes `dry_run.json` in `workdir`."""
  topology = config.topology
  devices = topology_devices(topology) if topology else None
  setup = build_setup(config, devices)
  started = time.perf_counter()
  compiled = setup.compile_train_step()
  train_cfg = config.train
  abstract = with_shardings(setup.abstract_state, setup.state_sharding)
  with setup.context():
    setup.jit_eval_step().lower(
        abstract.params, setup.batch_abstract(train_cfg.global_batch, train_cfg.seq_len)).compile()
  result: dict[str, Any] = {
      "params": count_params(setup.abstract_state.params),
      "flops_per_token": train_flops_per_token(setup.model_cfg, int(train_cfg.seq_len)),
      "bytes_per_device": compiled_memory_per_device(compiled),
      "mesh": dict(zip(setup.mesh.axis_names, (int(s) for s in setup.mesh.devices.shape))),
      "num_devices": int(setup.mesh.devices.size),
      "device_kind": setup.mesh.devices.flat[0].device_kind,
      "global_batch": int(train_cfg.global_batch),
      "seq_len": int(train_cfg.seq_len),
      "compile_s": round(time.perf_counter() - started, 2),
  }
  if topology:
    spec = parse_topology(topology)
    result.update(topology=topology, hbm_per_device=spec.hbm_bytes_per_chip,
                  fits=result["bytes_per_device"] <= spec.hbm_bytes_per_chip)
  with open(os.path.join(workdir, "dry_run.json"), "w") as f:
    json.dump(result, f, indent=2)
  logger.info("dry run: %s", result)
  return result
