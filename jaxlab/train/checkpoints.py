"""orbax checkpoints of the train state plus the data iterator position.

Saves may be asynchronous (the trainer picks the steps), the last `keep` are kept, and a
run restores the latest one from its workdir automatically. Restoring takes the abstract state
*with the current run's shardings*, so a checkpoint written on one mesh loads onto another.

The data iterator's state is saved as JSON from process 0: every process advances its shard in
lockstep, so the iterator position is the same on all of them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxlab.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  """The `checkpoint` section: cadence (in steps, or epochs for epoch-based studies), how many
  to keep, and whether saves run in the background."""

  every: int = 500
  keep: int = 3
  use_async: bool = True


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with the two items this project saves."""

  def __init__(self, workdir: str, keep: int = 3, use_async: bool = False):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=use_async)
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
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
    """Restores (state, data_state) onto the shardings carried by `abstract_state`."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
      ),
    )
    return restored["state"], restored["data"]

  def restore_params(self, abstract_params: Any, step: int | None = None) -> Any:
    """Restores only the parameters (for evaluation and sampling), onto their shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          item={"params": abstract_params},
          restore_args=jax.tree.map(
            lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), {"params": abstract_params}
          ),
          partial_restore=True,
        )
      ),
    )
    return restored["state"]["params"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
