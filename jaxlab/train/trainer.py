"""The one training loop every study runs: restore or init, compile, step, hooks, summary.

A study assembles a `Program` (objective, variable init, optimizer) and a data source, hands
them to a `Trainer` with its settings, mesh and workdir, adds evaluators or hooks with a cadence
(`add_hook(fn, every=N)`), and calls `run()`. The loop itself is study-agnostic:

1. SIGTERM/SIGINT are caught from the start (start-up and compilation included): the loop stops
   after the current step, saves a checkpoint and returns with `"preempted": true`.
2. The state is restored from the workdir's latest checkpoint onto the current mesh, or created
   already sharded; the data source resumes from the position saved beside it.
3. The step is compiled ahead of time and its per-device memory logged before step 1.
4. Each step: next batch -> global arrays -> jitted, donated step. Metrics are summed on device
   between log steps, so a logged value is the mean over its interval.
5. Hooks run at their cadence and at the end: metrics (metrics.jsonl + TensorBoard, and W&B
   when `settings.wandb` enables it; process 0), progress, evaluators, study hooks, then
   checkpointing (always last, so it saves what the others saw).
6. summary.json: run facts, the study's fields and the last value of every metric (also the
   W&B run's summary).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
import optax

from jaxlab import fileio
from jaxlab.config import ConfigError
from jaxlab.data.global_batch import to_global_batch
from jaxlab.data.source import Batch, DataSource, PolicySource
from jaxlab.objectives.base import Objective
from jaxlab.parallel.mesh import batch_sharding, mesh_context
from jaxlab.parallel.topology import compiled_memory_per_device
from jaxlab.progress import Progress
from jaxlab.train import state as state_lib
from jaxlab.train.checkpoints import Checkpointer, has_checkpoint, param_path_name
from jaxlab.train.flops import peak_flops_per_device
from jaxlab.train.metrics import MetricsWriter, json_safe
from jaxlab.train.preemption import PreemptionGuard
from jaxlab.train.step import evaluation_metrics, make_eval_step, make_train_step
from jaxlab.train.wandb_config import WandbSettings

logger = logging.getLogger(__name__)
Metrics = dict[str, float]
# (state, step) -> metrics to log at this step (or None)
HookFn = Callable[[state_lib.TrainState, int], Metrics | None]


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
  """How long to train and how often to log, evaluate and checkpoint (in steps)."""

  steps: int
  log_every: int = 10
  eval_every: int = 0  # 0: evaluate at the end only
  checkpoint_every: int = 500
  checkpoint_keep: int = 3
  async_checkpoints: bool = True
  microbatches: int = 1
  seed: int = 0
  max_nonfinite_steps: int = 5  # consecutive skipped steps that end the run (DivergedError)
  init_from: str = ""  # a run whose latest parameters start a run without checkpoints
  wandb: WandbSettings = WandbSettings()  # the W&B hook beside TensorBoard (off by default)


class DivergedError(RuntimeError):
  """Too many consecutive steps had a non-finite loss or gradient (the message is one line)."""


def interval_means(step_metrics: list[dict[str, Any]]) -> Metrics:
  """Each metric's mean over the finite steps of a log interval (NaN if none was finite), and
  `nonfinite_steps`, how many steps were skipped."""
  finite = [m for m in step_metrics if not m["nonfinite"]]
  means = {
    k: float(np.mean([m[k] for m in finite])) if finite else float("nan")
    for k in step_metrics[0]
    if k != "nonfinite"
  }
  return {**means, "nonfinite_steps": len(step_metrics) - len(finite)}


def check_fits(bytes_per_device: int, mesh: jax.sharding.Mesh) -> None:
  """Raises ConfigError (one line) when the compiled step cannot fit the devices' memory; on CPU
  the local devices share the host's available memory."""
  device = mesh.devices.flat[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    need, have, where = bytes_per_device, stats["bytes_limit"], f"each {device.device_kind}"
  else:
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    need, have, where = bytes_per_device * local, host_available_bytes(), "this host"
  if have is not None and need > have:
    raise ConfigError(
      f"the train step needs {need / 2**30:,.1f} GiB but {where} has {have / 2**30:,.1f} GiB: "
      "size it with --dry_run (--config.topology=v5p-128 for a TPU slice), use a smaller "
      "preset, or run on a pod (launch/tpu_pod.sh, launch/slurm_gpu.sbatch)"
    )


def host_available_bytes() -> int | None:
  """MemAvailable from /proc/meminfo (None where there is no such file)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    return None
  return None


@dataclasses.dataclass(frozen=True)
class Program:
  """What a study trains: the objective, how its variables start, and the optimizer."""

  objective: Objective
  init_variables: state_lib.InitVariables
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  init_frozen: state_lib.InitFrozen = state_lib.no_frozen_state
  start: state_lib.StartingWeights | None = None  # trained weights instead of a fresh init


@dataclasses.dataclass(frozen=True)
class Throughput:
  """Items (e.g. tokens) per step and, optionally, training FLOPs per item (for MFU)."""

  unit: str
  per_step: int
  flops_per_item: float | None = None


@dataclasses.dataclass
class Hook:
  fn: HookFn
  every: int  # 0: only at the end
  at_end: bool = True

  def due(self, step: int, is_last: bool) -> bool:
    return (self.every > 0 and step % self.every == 0) or (is_last and self.at_end)


class Trainer:
  """Trains `program` on `data` in `workdir` over `mesh`; see the module docstring."""

  def __init__(
    self,
    settings: TrainerSettings,
    program: Program,
    data: DataSource | None,
    batch_spec: dict[str, jax.ShapeDtypeStruct],
    *,
    mesh: jax.sharding.Mesh,
    rules: tuple,
    workdir: str,
    summary_fields: dict[str, Any] | None = None,
    throughput: Throughput | None = None,
  ):
    self.settings, self.program, self.data = settings, program, data
    self.mesh, self.rules, self.workdir = mesh, rules, workdir
    self.summary_fields = dict(summary_fields or {})
    self.throughput = throughput
    self.is_main = jax.process_index() == 0
    self.batch_sharding = batch_sharding(mesh, rules)
    self.batch_spec = {
      k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_sharding)
      for k, v in batch_spec.items()
    }
    self.abstract_state, self.state_sharding = state_lib.state_shardings(
      program.init_variables, program.init_frozen, program.tx, mesh, rules
    )
    self._hooks: list[Hook] = []

  # ------------------------------------------------------------------ extension points

  def add_hook(self, fn: HookFn, every: int, at_end: bool = True) -> None:
    """Calls `fn(state, step)` every `every` steps (0: never on cadence) and, with `at_end`, after
    the last step; the metrics it returns are logged and kept for the summary."""
    self._hooks.append(Hook(fn, every, at_end))

  def add_evaluator(
    self, name: str, batches: Callable[[], Iterable[Batch]], every: int | None = None
  ) -> None:
    """Evaluates the objective on `batches()` (host-local batches, a fresh pass each call) and
    logs `{name}_loss` and `{name}_{metric}`; the cadence defaults to `settings.eval_every`."""
    eval_step = jax.jit(
      make_eval_step(self.program.objective),
      in_shardings=(self.state_sharding, self.batch_sharding),
      out_shardings=state_lib.replicated(self.mesh),
    )

    def evaluate(state, step):
      del step
      sums: dict[str, float] = {}
      with mesh_context(self.mesh, self.rules):
        for local_batch in batches():
          out = jax.device_get(eval_step(state, to_global_batch(local_batch, self.batch_sharding)))
          for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + float(value)
      return evaluation_metrics(sums, name)

    self.add_hook(evaluate, self.settings.eval_every if every is None else every)

  # ------------------------------------------------------------------ compilation

  def abstract_state_with_shardings(self) -> state_lib.TrainState:
    return state_lib.with_shardings(self.abstract_state, self.state_sharding)

  def compile(self):
    """Lowers and compiles the train step against abstract inputs (nothing allocated) and logs
    its per-device memory."""
    step = make_train_step(
      self.program.objective, self.program.tx, self.program.schedule, self.settings.microbatches
    )
    jitted = jax.jit(
      step,
      in_shardings=(self.state_sharding, self.batch_sharding),
      out_shardings=(self.state_sharding, state_lib.replicated(self.mesh)),
      donate_argnums=(0,),
    )
    with mesh_context(self.mesh, self.rules):
      compiled = jitted.lower(self.abstract_state_with_shardings(), self.batch_spec).compile()
    self.bytes_per_device = compiled_memory_per_device(compiled)
    stats = compiled.memory_analysis()
    if stats is not None:
      logger.info(
        "train step memory per device: arguments %.1f MiB, outputs %.1f MiB, "
        "aliased %.1f MiB, temporaries %.1f MiB, total %.1f MiB",
        stats.argument_size_in_bytes / 2**20,
        stats.output_size_in_bytes / 2**20,
        stats.alias_size_in_bytes / 2**20,
        stats.temp_size_in_bytes / 2**20,
        self.bytes_per_device / 2**20,
      )
    return compiled

  def latest_params(self) -> Any:
    """The parameters in the workdir's latest checkpoint (a finished run's weights, for the next
    stage of a multi-stage study), on this trainer's shardings."""
    checkpointer = Checkpointer(self.workdir)
    try:
      return checkpointer.restore_params(self.abstract_state_with_shardings().params)
    finally:
      checkpointer.close()

  def num_params(self) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.abstract_state.params))

  # ------------------------------------------------------------------ the loop

  def _restore_or_init(self, checkpointer: Checkpointer) -> state_lib.TrainState:
    if checkpointer.latest_step() is not None:
      state, data_state = checkpointer.restore(self.abstract_state_with_shardings())
      self.data.set_state(data_state)
      logger.info("resumed from %s at step %d", checkpointer.directory, int(state.step))
      return state
    if self.settings.init_from:
      return self.create_state(self._initial_params(self.settings.init_from))
    return self.create_state()

  def _saved_dtypes(self, run: str) -> dict[str, Any]:
    """`{"a/b": dtype}` of the latest parameters saved in `run`, after checking that they have
    this model's names and shapes (from metadata, nothing loaded); ConfigError (one line) if not."""
    leaves = jax.tree_util.tree_leaves_with_path(self.abstract_state.params)
    wanted = {param_path_name(path): tuple(leaf.shape) for path, leaf in leaves}
    if not has_checkpoint(run):  # checked first: a Checkpointer would create the directory
      raise ConfigError(f"init_from {run}: no checkpoint in that directory")
    checkpointer = Checkpointer(run)
    try:
      saved = checkpointer.params_shapes()
    finally:
      checkpointer.close()
    for name in sorted(set(wanted) | set(saved)):
      have = saved[name][0] if name in saved else "(none)"
      need = wanted.get(name, "(none)")
      if have != need:
        raise ConfigError(
          f"init_from {run} does not fit this model: parameter {name} is {have} there but "
          f"{need} here; match the model section to that run's config.json"
        )
    return {name: dtype for name, (_, dtype) in saved.items()}

  def _initial_params(self, run: str) -> state_lib.StartingWeights:
    """The latest parameters of the run in `run`, cast to this run's dtypes, as starting weights
    (the optimizer starts fresh)."""
    dtypes = self._saved_dtypes(run)
    abstract = self.abstract_state_with_shardings().params
    as_saved = jax.tree_util.tree_map_with_path(
      lambda path, a: jax.ShapeDtypeStruct(
        a.shape, dtypes[param_path_name(path)], sharding=a.sharding
      ),
      abstract,
    )
    checkpointer = Checkpointer(run)
    try:
      params = checkpointer.restore_params(as_saved)
    finally:
      checkpointer.close()
    logger.info("initialized the parameters from %s", run)
    params = jax.tree.map(lambda p, a: p.astype(a.dtype), params, abstract)
    frozen = None if self.program.start is None else self.program.start.frozen
    return state_lib.StartingWeights(params=params, frozen=frozen)

  def create_state(self, start: state_lib.StartingWeights | None = None) -> state_lib.TrainState:
    """A fresh state for `settings.seed`, created directly into its shardings; its parameters
    are `start`'s (default: the program's starting weights, if any)."""
    with mesh_context(self.mesh, self.rules):
      return state_lib.create_state(
        self.program.init_variables,
        self.program.init_frozen,
        self.program.tx,
        self.settings.seed,
        self.state_sharding,
        start or self.program.start,
      )

  def _throughput_metrics(self, step_time: float) -> Metrics:
    if self.throughput is None:
      return {}
    per_s = self.throughput.per_step / step_time
    metrics = {f"{self.throughput.unit}_per_s": per_s}
    if self.throughput.flops_per_item:
      tflops = self.throughput.flops_per_item * per_s / self.mesh.devices.size / 1e12
      metrics["tflops_per_device"] = tflops
      peak = peak_flops_per_device(self.mesh.devices.flat[0].device_kind)
      if peak:
        metrics["mfu"] = tflops * 1e12 / peak
    return metrics

  def run(self) -> dict[str, Any]:
    """Trains to `settings.steps` (resuming if a checkpoint exists) and returns the summary.

    A run that is already finished returns its summary.json untouched."""
    summary_path = os.path.join(self.workdir, "summary.json")
    total = self.settings.steps
    started = time.perf_counter()
    with PreemptionGuard() as guard:
      checkpointer = Checkpointer(
        self.workdir, keep=self.settings.checkpoint_keep, use_async=self.settings.async_checkpoints
      )
      latest = checkpointer.latest_step()
      if latest is not None and latest >= total and fileio.isfile(summary_path):
        logger.info(
          "the run in %s is finished (step %d); summary.json left as it is", self.workdir, latest
        )
        checkpointer.close()
        return fileio.read_json(summary_path)
      if latest is None and self.settings.init_from:
        self._saved_dtypes(self.settings.init_from)  # a mismatch fails before compiling
      logger.info("model: %s parameters", f"{self.num_params():,}")
      compiled = self.compile()
      check_fits(self.bytes_per_device, self.mesh)  # before anything is allocated
      state = self._restore_or_init(checkpointer)
      start = int(state.step)
      writer = MetricsWriter(
        self.workdir, enabled=self.is_main, after_step=start, wandb=self.settings.wandb
      )
      progress = Progress(total, initial=start, enabled=self.is_main)
      last: Metrics = {}
      pending: list[dict[str, jax.Array]] = []  # step metrics since the last log, on device
      interval_start, interval_steps = time.perf_counter(), 0
      preempted = guard.requested  # a signal during start-up: stop before training
      step, nonfinite_streak, diverged = start, 0, False
      with mesh_context(self.mesh, self.rules):
        while step < total and not preempted:
          local = (
            self.data.next_for(state) if isinstance(self.data, PolicySource) else next(self.data)
          )
          batch = to_global_batch(local, self.batch_sharding)
          state, metrics = compiled(state, batch)
          step += 1
          pending.append(metrics)
          interval_steps += 1
          preempted = guard.requested  # read once: a later signal is handled after the next step
          is_last = step == total or preempted
          logged: Metrics = {}
          if step % self.settings.log_every == 0 or is_last:
            fetched = jax.device_get(pending)
            step_time = (time.perf_counter() - interval_start) / interval_steps
            logged = {**interval_means(fetched), "step_time_s": step_time}
            logged.update(self._throughput_metrics(step_time))
            pending = []
            for m in fetched:
              nonfinite_streak = nonfinite_streak + 1 if m["nonfinite"] else 0
            diverged = nonfinite_streak >= self.settings.max_nonfinite_steps
          if not (preempted or diverged):
            for hook in self._hooks:
              if hook.due(step, is_last):
                logged.update(hook.fn(state, step) or {})
          if logged:
            last.update(logged)
            writer.write(step, logged)
            progress.update(step, logged)
            interval_start, interval_steps = time.perf_counter(), 0
          if diverged:  # nothing more is saved: the checkpoints keep their finite parameters
            break
          if step % self.settings.checkpoint_every == 0 or is_last:
            checkpointer.save(step, state, self.data.get_state())
      if step == start and step == total:  # restored a finished run whose summary was lost
        for hook in self._hooks:
          if hook.at_end:
            last.update(hook.fn(state, step) or {})
      checkpointer.close()
      self.data.close()
      progress.close()
      summary = None
      if not diverged:
        summary = {
          "step": step,
          "total_steps": total,
          "preempted": preempted,
          "params": self.num_params(),
          "num_devices": int(self.mesh.devices.size),
          "device_kind": self.mesh.devices.flat[0].device_kind,
          "bytes_per_device": self.bytes_per_device,
          "wall_time_s": time.perf_counter() - started,
          **self.summary_fields,
          **last,
        }
      writer.close(summary, exit_code=1 if diverged else 0)  # a W&B run gets the summary
    if diverged:
      raise DivergedError(
        f"training diverged: {nonfinite_streak} consecutive steps up to step {step} had a "
        f"non-finite loss or gradient and were skipped; the checkpoints in {self.workdir} "
        "hold only finite parameters"
      )
    if self.is_main:
      fileio.write_text_atomic(summary_path, json.dumps(json_safe(summary), indent=2) + "\n")
    return summary
