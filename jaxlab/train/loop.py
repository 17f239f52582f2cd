"""The LM training loop: restore or init, compile, step, log, evaluate, checkpoint, summarize."""

from __future__ import annotations

import logging
import json
import os
import time
from typing import Any, Sequence

import jax
import ml_collections

from jaxlab.config import write_config
from jaxlab.data.global_batch import to_global_batch
from jaxlab.data.pipeline import build_lm_iterator
from jaxlab.models.transformer import count_params
from jaxlab.parallel.topology import compiled_memory_per_device
from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.flops import peak_flops_per_device, train_flops_per_token
from jaxlab.train.metrics import MetricsWriter, Progress
from jaxlab.train.preemption import PreemptionGuard
from jaxlab.train.setup import TrainSetup, build_setup
from jaxlab.train.state import with_shardings

logger = logging.getLogger(__name__)


def _data_iterator(setup: TrainSetup, split: str):
  cfg = setup.config
  return build_lm_iterator(cfg.data, seq_len=int(cfg.train.seq_len),
                           global_batch=int(cfg.train.global_batch), split=split,
                           seed=int(cfg.seed), process_index=jax.process_index(),
                           process_count=jax.process_count())


def evaluate(setup: TrainSetup, eval_step, params: Any) -> float:
  """Mean token loss over the held-out split."""
  loss_sum, weight_sum = 0.0, 0.0
  iterator = _data_iterator(setup, "eval")
  for local_batch in iterator:
    out = jax.device_get(eval_step(params, to_global_batch(local_batch, setup.batch_sharding)))
    loss_sum += float(out["loss_sum"])
    weight_sum += float(out["weight_sum"])
  iterator.close()
  return loss_sum / max(weight_sum, 1.0)


def log_memory(compiled) -> int:
  """Logs the compiled step's per-device memory (before step 1) and returns the bytes."""
  stats = compiled.memory_analysis()
  total = compiled_memory_per_device(compiled)
  if stats is not None:
    logger.info("train step memory per device: arguments %.1f MiB, outputs %.1f MiB, "
                 "aliased %.1f MiB, temporaries %.1f MiB, total %.1f MiB",
                 stats.argument_size_in_bytes / 2**20, stats.output_size_in_bytes / 2**20,
                 stats.alias_size_in_bytes / 2**20, stats.temp_size_in_bytes / 2**20,
                 total / 2**20)
  return total


def train_lm(config: ml_collections.ConfigDict, workdir: str,
             devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains (or resumes) the LM described by `config` in `workdir`; returns the summary."""
  setup = build_setup(config, devices)
  train_cfg = config.train
  total_steps, log_every = int(train_cfg.steps), int(train_cfg.log_every)
  is_main = jax.process_index() == 0
  if is_main:
    write_config(config, workdir)
  checkpointer = Checkpointer(workdir, config.checkpoint)
  data_iter = _data_iterator(setup, "train")

  if checkpointer.latest_step() is not None:
    state, data_state = checkpointer.restore(
        with_shardings(setup.abstract_state, setup.state_sharding))
    data_iter.set_state(data_state)
    logger.info("resumed from %s at step %d", checkpointer.directory, int(state.step))
  else:
    state = setup.create_state()
  num_params = count_params(setup.abstract_state.params)
  logger.info("model: %s parameters", f"{num_params:,}")

  compiled = setup.compile_train_step()
  bytes_per_device = log_memory(compiled)
  eval_step = setup.jit_eval_step()
  tokens_per_step = int(train_cfg.global_batch) * int(train_cfg.seq_len)
  flops_per_token = train_flops_per_token(setup.model_cfg, int(train_cfg.seq_len))
  num_devices = setup.mesh.devices.size
  peak = peak_flops_per_device(setup.mesh.devices.flat[0].device_kind)

  start_step = int(state.step)
  writer = MetricsWriter(workdir, enabled=is_main)
  progress = Progress(total_steps, initial=start_step, enabled=is_main)
  last: dict[str, Any] = {}
  last_time, last_step = time.perf_counter(), start_step
  started = time.perf_counter()
  preempted = False
  with PreemptionGuard() as guard, setup.context():
    for step in range(start_step, total_steps):
      batch = to_global_batch(next(data_iter), setup.batch_sharding)
      state, metrics = compiled(state, batch)
      done = step + 1
      stop = guard.requested  # read once: a signal arriving later is handled next step
      is_last = done == total_steps or stop
      if done % log_every == 0 or is_last:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        step_time = (now - last_time) / (done - last_step)
        tokens_per_s = tokens_per_step / step_time
        tflops = flops_per_token * tokens_per_s / num_devices / 1e12
        metrics.update(step_time_s=step_time, tokens_per_s=tokens_per_s,
                       tflops_per_device=tflops)
        if peak:
          metrics["mfu"] = tflops * 1e12 / peak
        last_time, last_step = now, done
        last.update(metrics)
        writer.write(done, metrics)
        progress.update(done, metrics)
      eval_every = int(train_cfg.eval_every)
      if (eval_every and done % eval_every == 0) or done == total_steps:
        last["eval_loss"] = evaluate(setup, eval_step, state.params)
        writer.write(done, {"eval_loss": last["eval_loss"]})
        progress.update(done, {"eval_loss": last["eval_loss"]})
        last_time = time.perf_counter()  # eval time is not step time
      if done % int(config.checkpoint.every) == 0 or is_last:
        checkpointer.save(done, state, data_iter.get_state())
      if stop:
        preempted = True
        break
  checkpointer.close()
  data_iter.close()
  progress.close()
  writer.close()

  summary = {"step": int(state.step), "total_steps": total_steps, "preempted": preempted,
             "params": num_params, "flops_per_token": flops_per_token,
             "bytes_per_device": bytes_per_device, "num_devices": int(num_devices),
             "device_kind": setup.mesh.devices.flat[0].device_kind,
             "wall_time_s": time.perf_counter() - started, **last}
  if is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary
