"""Entry point: python -m jaxlab.launch --config configs/NAME.py[:ARGS] --workdir DIR
[--config.key=value ...] [--dry_run]

`config.experiment` names a module in jaxlab/experiments exposing validate(config),
run(config, workdir) and dry_run(config, workdir). Bad input ends in one line on stderr and exit
status 2, before anything is written to the workdir.
"""

from __future__ import annotations

import importlib
import json
import logging as std_logging
import os
import pkgutil
from types import ModuleType

import jax
from absl import app, flags, logging

import jaxlab  # noqa: F401  (selects the JAX platform before jax is imported)
from jaxlab import experiments
from jaxlab.cli import fail
from jaxlab.config import ConfigError, apply_overrides, load_config, write_config
from jaxlab.parallel import distributed

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
  try:
    config = load_config(FLAGS.config)
    apply_overrides(config, _overrides)
    module = experiment_module(config.experiment)
    module.validate(config, dry_run=FLAGS.dry_run)
  except (ConfigError, FileNotFoundError) as e:
    fail(str(e))
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    write_config(config, workdir)
  std_logging.getLogger("jaxlab").info("experiment %s in %s", config.experiment, workdir)
  result = module.dry_run(config, workdir) if FLAGS.dry_run else module.run(config, workdir)
  print(json.dumps(result, indent=2, default=str))


def run() -> None:
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
