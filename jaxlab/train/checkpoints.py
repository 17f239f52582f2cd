"""orbax checkpoints of the train state plus the data iterator position.

Saves may be asynchronous (the trainer picks the steps), the last `keep` are kept, and a
run restores the latest one from its workdir automatically. Restoring takes the abstract state
*with the current run's shardings*, so a checkpoint written on one mesh loads onto another.

The data iterator's state is saved as JSON from process 0: every process advances its shard in
lockstep, so the iterator position is the same on all of them.

A checkpoint that cannot be read (a truncated array file, a garbled data position, a missing
item) does not end a restart: the restore falls back to the next older step, with one warning
line per unreadable step, and raises `CheckpointError` only when no step on disk can be read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import orbax.checkpoint as ocp
from etils import epath

from jaxlab import fileio
from jaxlab.train.state import TrainState

logger = logging.getLogger(__name__)
T = TypeVar("T")

UNREADABLE_PREFIX = "unreadable-"
_REASON_CHARS = 300


class CheckpointError(ValueError):
  """No checkpoint in a directory that has some could be read (one line: the directory and the
  steps tried, each with its reason)."""


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  """The `checkpoint` section: cadence (in steps, or epochs for epoch-based studies), how many
  to keep, and whether saves run in the background."""

  every: int = 500
  keep: int = 3
  use_async: bool = True
  # A run directory whose latest parameters start this run when its workdir has no checkpoint
  # yet (fine-tuning; the optimizer starts fresh). "": a fresh init.
  init_from: str = ""

  def validate(self) -> None:
    """Raises ValueError (one line) for a cadence or count below 1, or an `init_from` that holds
    no checkpoint."""
    for name in ("every", "keep"):
      if getattr(self, name) < 1:
        raise ValueError(f"checkpoint.{name} must be at least 1, got {getattr(self, name)}")
    if self.init_from and not has_checkpoint(self.init_from):
      raise ValueError(f"checkpoint.init_from {self.init_from}: no checkpoint in that directory")


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir/checkpoints` holds at least one step directory."""
  directory = os.path.join(workdir, "checkpoints")
  return fileio.isdir(directory) and any(name.isdigit() for name in fileio.listdir(directory))


def param_path_name(path: tuple) -> str:
  """A parameter's pytree key path as `layers/mlp/w_gate`."""
  return "/".join(str(getattr(k, "key", k)) for k in path)


def _one_line(error: BaseException) -> str:
  """`error` as a short single line: the type and first message line of its root cause (orbax
  wraps tensorstore's read errors in an exception whose own message is a dump of the spec)."""
  while error.__cause__ is not None:
    error = error.__cause__
  message = error.args[0] if isinstance(error, KeyError) and error.args else error
  lines = str(message).strip().splitlines()
  text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
  return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with the two items this project saves."""

  def __init__(self, workdir: str, keep: int = 3, use_async: bool = False):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=use_async)
    self.directory = os.path.join(fileio.absolute(workdir), "checkpoints")
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data")
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: TrainState, data_state: dict[str, Any]) -> None:
    """Starts an asynchronous save of `state` and the data position; the caller picks the steps."""
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
      ),
      force=True,
    )

  def restore(self, abstract_state: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
    """Restores (state, data_state) onto the shardings carried by `abstract_state`.

    With `step` given, exactly that step is read. Otherwise the latest *readable* step is: an
    unreadable one (any error while reading the state or the data position, or a missing item)
    logs one warning and the next older step is tried; `CheckpointError` if none can be read
    (`FileNotFoundError` if there is no checkpoint at all).

    Once an older step has been restored, the newer unreadable ones are moved aside, renamed (never
    deleted) to `checkpoints/unreadable-N/` (process 0 renames, on shared storage): orbax would
    otherwise still report them as the latest step, refuse the resumed run's save of the same step
    number (StepAlreadyExistsError) and pick the broken one again at the next restart. When no
    step is readable nothing is moved, so every restart fails the same way until someone looks.
    """
    args = ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
    )
    if step is not None:
      restored = self._manager.restore(step, args=args)
      return restored["state"], restored["data"]

    def read(step: int) -> tuple[TrainState, dict]:
      restored = self._manager.restore(step, args=args)
      for name in ("state", "data"):
        if restored.get(name) is None:
          raise KeyError(f"item {name!r} is missing")
      return restored["state"], restored["data"]

    (state, data_state), unreadable = self._restore_with_fallback(read)
    if unreadable:
      self._move_aside(unreadable)
    return state, data_state

  def restore_params(self, abstract_params: Any, step: int | None = None) -> Any:
    """Restores only the parameters (for evaluation and sampling), onto their shardings.

    Without `step`, falls back from an unreadable latest step to older ones like `restore`, but
    moves nothing aside: evaluation only reads, and may run beside the training run that owns the
    directory."""
    args = ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
        item={"params": abstract_params},
        restore_args=jax.tree.map(
          lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), {"params": abstract_params}
        ),
        partial_restore=True,
      )
    )
    if step is not None:
      return self._manager.restore(step, args=args)["state"]["params"]

    def read(step: int) -> Any:
      restored = self._manager.restore(step, args=args)
      if restored.get("state") is None:
        raise KeyError("item 'state' is missing")
      return restored["state"]["params"]

    params, _ = self._restore_with_fallback(read)
    return params

  def params_shapes(self, step: int | None = None) -> dict[str, tuple[tuple[int, ...], Any]]:
    """`{"a/b": (shape, dtype)}` of the saved parameters at `step` (default: the latest), read
    from the checkpoint's metadata without loading any array."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    state_dir = os.path.join(self.directory, str(step), "state")
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree["params"]
    return {
      param_path_name(path): (tuple(leaf.shape), leaf.dtype)
      for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }

  def _restore_with_fallback(self, read: Callable[[int], T]) -> tuple[T, list[int]]:
    """`read(step)` of the newest step that reads without error, and the newer steps that did
    not; one warning per unreadable step that has an older one to fall back to."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    reasons: list[str] = []
    for i, step in enumerate(steps):
      try:
        return read(step), steps[:i]
      except Exception as e:  # any failure to read makes the step unreadable
        reason = _one_line(e)
      reasons.append(f"step {step}: {reason}")
      if i + 1 < len(steps):
        logger.warning(
          "checkpoint step %d in %s is unreadable (%s); falling back to step %d",
          step,
          self.directory,
          reason,
          steps[i + 1],
        )
    tried = ", ".join(str(s) for s in steps)
    raise CheckpointError(
      f"no readable checkpoint in {self.directory} (tried steps {tried}; {'; '.join(reasons)})"
    )

  def _move_aside(self, steps: list[int]) -> None:
    """Renames the step directories `steps` to `unreadable-N` (`unreadable-N.K` if taken)."""
    if jax.process_index() == 0:
      for step in steps:
        source = os.path.join(self.directory, str(step))
        if not fileio.isdir(source):
          continue
        target = os.path.join(self.directory, f"{UNREADABLE_PREFIX}{step}")
        k = 0
        while fileio.exists(target):
          k += 1
          target = os.path.join(self.directory, f"{UNREADABLE_PREFIX}{step}.{k}")
        fileio.rename(source, target)
        logger.info("moved unreadable checkpoint step %d aside to %s", step, target)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("jaxlab_checkpoint_move_aside")
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
