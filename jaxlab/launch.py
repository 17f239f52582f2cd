"""Entry point: python -m jaxlab.launch --config configs/NAME.py[:ARGS] --workdir DIR
[--config.key=value ...] [--dry_run]

`config.experiment` names a module in jaxlab/experiments exposing validate(config),
run(config, workdir) and dry_run(config, workdir). Bad input ends in one line on stderr and exit
status 2, before anything is written to the workdir; a config that conflicts with the run already
in the workdir is bad input too, so a failing launch never touches an existing run's files. A run
that diverges (non-finite losses) ends in one line and exit status 3. SIGTERM/SIGINT at any point
(start-up and compilation included) stop the run cleanly with exit status 0.
"""

from __future__ import annotations

import importlib
import json
import logging as std_logging
import os
import pkgutil
import sys
from types import ModuleType

import jaxlab  # noqa: F401, I001  (selects the JAX platform before jax is imported)
from jaxlab.train.preemption import PreemptionGuard

# Entered before jax loads: a signal during start-up becomes a stop request, not a kill.
_GUARD = PreemptionGuard().__enter__()

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from jaxlab import experiments, fileio  # noqa: E402
from jaxlab.cli import exit_cleanly_on_interrupt, fail  # noqa: E402
from jaxlab.config import (  # noqa: E402
  ConfigError,
  apply_overrides,
  load_config,
  run_identity_conflicts,
  write_config,
)
from jaxlab.parallel import distributed  # noqa: E402
from jaxlab.train.checkpoints import CheckpointError  # noqa: E402
from jaxlab.train.trainer import DivergedError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Config file, path.py[:arg].")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summaries.")
flags.DEFINE_bool("dry_run", False, "Compile abstractly and write dry_run.json; train nothing.")
flags.DEFINE_enum(
  "distributed",
  "auto",
  ["auto", "on", "off"],
  "Initialize multi-host JAX: auto = when the environment shows several processes.",
)

OVERRIDE_PREFIX = "--config."
_overrides: list[tuple[str, str]] = []


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with `--config.a.b=v` overrides split off and errors made one line."""
  rest = [argv[0]]
  for arg in argv[1:]:
    if arg.startswith(OVERRIDE_PREFIX):
      key, eq, value = arg[len(OVERRIDE_PREFIX) :].partition("=")
      if not eq:
        fail(f"override {arg!r} needs a value: --config.{key}=VALUE")
      _overrides.append((key, value))
    else:
      rest.append(arg)
  try:
    positional = FLAGS(rest)
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  if FLAGS.config is None:
    fail("--config is required (configs/NAME.py[:ARGS])")
  if FLAGS.workdir is None:
    fail("--workdir is required")
  if len(positional) > 1:
    fail(f"unexpected arguments: {' '.join(positional[1:])}")
  return positional


def experiment_module(name: str) -> ModuleType:
  """Imports jaxlab.experiments.<name>; unknown names list the available experiments."""
  available = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))
  if name not in available:
    raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(available)}")
  return importlib.import_module(f"jaxlab.experiments.{name}")


def configure_logging() -> None:
  """jaxlab's own INFO lines stay visible; libraries' INFO chatter (orbax) needs --verbosity=0."""
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("jaxlab").setLevel(std_logging.INFO)


def main(argv: list[str]) -> None:
  del argv
  configure_logging()
  try:
    distributed.initialize(FLAGS.distributed)
  except RuntimeError as e:
    fail(str(e))
  workdir = FLAGS.workdir
  try:
    check_workdir(workdir)
    config = load_config(FLAGS.config)
    apply_overrides(config, _overrides)
    module = experiment_module(config.experiment)
    module.validate(config, dry_run=FLAGS.dry_run)
    conflicts = run_identity_conflicts(config, workdir)
    if conflicts:
      raise ConfigError(
        f"{workdir} holds a run with a different {conflicts}; use another --workdir"
      )
  except (ConfigError, FileNotFoundError) as e:
    fail(str(e))
  if _GUARD.requested:  # stopped before anything was written
    print(json.dumps({"preempted": True, "step": 0}))
    return
  created = not fileio.exists(workdir)
  config_path = os.path.join(workdir, "config.json")
  previous_config = None if not fileio.isfile(config_path) else fileio.read_text(config_path)
  try:
    fileio.makedirs(workdir)
    if jax.process_index() == 0:
      write_config(config, workdir)
  except OSError as e:
    fail(f"--workdir {workdir}: {e.strerror or e}")
  std_logging.getLogger("jaxlab").info("experiment %s in %s", config.experiment, workdir)
  try:
    result = module.dry_run(config, workdir) if FLAGS.dry_run else module.run(config, workdir)
  except DivergedError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  except (ConfigError, CheckpointError) as e:  # what only the run can see: memory, checkpoints
    if created:  # a refused run leaves nothing behind
      fileio.rmtree(workdir)
    elif previous_config is not None:
      fileio.write_text_atomic(config_path, previous_config)
    fail(str(e))
  print(json.dumps(result, indent=2, default=str))


def check_workdir(workdir: str) -> None:
  """Raises ConfigError for a workdir that cannot hold a run: a file, or a place where no
  directory can be created (checked without creating anything). A bucket URL is checked when
  the run first writes to it."""
  if fileio.is_remote(workdir):
    if fileio.isfile(workdir):
      raise ConfigError(f"--workdir {workdir} is a file, not a directory")
    return
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"--workdir {workdir} is a file, not a directory")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir {workdir}: {parent} is not a writable directory")
  if os.path.realpath(parent).startswith(("/proc", "/sys")):
    raise ConfigError(f"--workdir {workdir}: {parent} is a virtual file system")


@exit_cleanly_on_interrupt()  # e.g. a second Ctrl-C, which force-quits
def run() -> None:
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
