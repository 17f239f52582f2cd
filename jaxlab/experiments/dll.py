"""Experiment `dll`: train an MLP, CNN or RNN with backprop (bp), feedback alignment (fa),
Dendritic Localized Learning (dll) or DLL with frozen Theta (dll_fa), chosen by `config.method`.

DLL is an ordinary objective: smoothed cross-entropy summed over predictions, whose `jax.grad`
through the nets' custom-VJP layers (jaxlab.models.dll) is backprop's gradient for bp and the
local updates for fa, dll and dll_fa. The trainer logs once per epoch, evaluates accuracy on the
test split (and a validation split, when held out) every `train.eval_every` epochs, checkpoints
every `checkpoint.every` epochs and writes summary.json with `test_accuracy` (next-character
accuracy for the RNN task).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab import fileio
from jaxlab.config import (
  ConfigError,
  check_known_keys,
  parse_arg,
  section_defaults,
  settings_from_section,
)
from jaxlab.data import char_tasks, vision
from jaxlab.models.dll import METHODS, LearningRule
from jaxlab.models.dll_nets import NetConfig, build_net
from jaxlab.objectives.supervised import Classification
from jaxlab.parallel.mesh import default_mesh_config
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.epochs import EpochTrainSettings, epoch_trainer, shape_only, validate_batch_split
from jaxlab.train.optimizer import FeedbackAdamSettings, build_feedback_optimizer
from jaxlab.train.trainer import Program, Trainer
from jaxlab.train.wandb_config import WandbSettings
from jaxlab.train.wandb_logging import wandb_settings

TEXT_TASK = "stdlib_text"


def parse_method_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config arg such as `dll_fa`, `bp,seed=1` or `method=fa`: a bare method name picks
  the method, everything else goes through jaxlab.config.parse_arg against `defaults`."""
  items = [item for item in (arg or "").split(",") if item]
  named = [item for item in items if item in METHODS]
  for item in items:
    if "=" not in item and item not in METHODS and not isinstance(defaults.get(item), bool):
      raise ConfigError(
        f"unknown config argument {item!r}; a bare word names the method, one of "
        f"{', '.join(METHODS)}"
      )
  if len(named) > 1:
    raise ConfigError(f"config arg names several methods: {', '.join(named)}")
  args = parse_arg(",".join(i for i in items if i not in METHODS), method="dll", **defaults)
  if named:
    args.method = named[0]
  if args.method not in METHODS:
    raise ConfigError(f"unknown method {args.method!r}; choose one of {', '.join(METHODS)}")
  return args


def base_config(method: str, seed: int) -> ml_collections.ConfigDict:
  """Fields every DLL config shares; configs/dll_*.py add `model`, `data` and the learning rate."""
  config = ml_collections.ConfigDict()
  config.experiment = "dll"
  config.method = method
  config.seed = seed
  # Learning rule (dll, dll_fa; fa always uses scale 1, no clipping). theta_sign=+1 is the
  # reference MLP/CNN code's Theta update, -1 the paper's Eq. 9 (and its RNN code).
  config.rule = ml_collections.ConfigDict(
    {k: v for k, v in section_defaults(LearningRule).items() if k != "method"}
  )
  config.optimizer = section_defaults(FeedbackAdamSettings)
  config.train = section_defaults(EpochTrainSettings)
  config.train.update(epochs=50, label_smoothing=0.1, eval_batch_size=1000)
  config.checkpoint = section_defaults(CheckpointSettings)
  config.checkpoint.update(every=10, keep=2, use_async=False)
  config.mesh = default_mesh_config()
  return config


@dataclasses.dataclass(frozen=True)
class DLLSettings:
  """A DLL run's config, read once; `data` stays a section (the loaders read it whole)."""

  seed: int
  rule: LearningRule
  model: NetConfig
  optimizer: FeedbackAdamSettings
  train: EpochTrainSettings
  checkpoint: CheckpointSettings
  data: ml_collections.ConfigDict
  mesh: ml_collections.ConfigDict
  wandb: WandbSettings = WandbSettings()

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> DLLSettings:
    return cls(
      seed=int(config.seed),
      rule=learning_rule(config),
      model=NetConfig.from_config(config.model),
      optimizer=settings_from_section(FeedbackAdamSettings, config.optimizer, "optimizer"),
      train=settings_from_section(EpochTrainSettings, config.train, "train"),
      checkpoint=settings_from_section(CheckpointSettings, config.checkpoint, "checkpoint"),
      data=config.data,
      mesh=config.mesh,
      wandb=wandb_settings(config),
    )


def image_data_config(name: str = "digits") -> ml_collections.ConfigDict:
  """Image data: digits split by (test_fraction, split_seed); other sets from npz_path or tfds."""
  return ml_collections.ConfigDict(
    dict(
      name=name,
      npz_path="",
      tfds_data_dir="",
      test_fraction=0.2,
      validation_fraction=0.0,
      split_seed=0,
    )
  )


def text_data_config(seq_len: int = 32, max_chars: int = 100_000) -> ml_collections.ConfigDict:
  """Next-character prediction on the standard library's reference manual topics."""
  return ml_collections.ConfigDict(
    dict(
      name=TEXT_TASK,
      seq_len=seq_len,
      max_chars=max_chars,
      test_fraction=0.1,
      validation_fraction=0.0,
      split_seed=0,
    )
  )


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config (and, unless dry_run, that the data is there); raises ConfigError."""
  try:
    settings = DLLSettings.from_config(config)
    settings.model.validate()
    settings.train.validate(settings.checkpoint)
    validate_batch_split(settings.train, settings.mesh)
    settings.wandb.validate()
    if not settings.optimizer.lr > 0:
      raise ValueError(f"optimizer.lr must be positive, got {settings.optimizer.lr}")
  except ValueError as e:
    raise ConfigError(str(e)) from None
  kind = settings.model.kind
  if settings.rule.form == "outer" and kind != "mlp":
    raise ConfigError(f"rule.form='outer' is available for model.kind='mlp' only, not {kind!r}")
  if not 0.0 <= config.data.validation_fraction < 1.0:
    raise ConfigError(
      f"data.validation_fraction must be in [0, 1), got {config.data.validation_fraction}"
    )
  if (kind == "rnn") != (config.data.name == TEXT_TASK):
    raise ConfigError(
      f"model.kind='rnn' goes with data.name={TEXT_TASK!r} and only it; got "
      f"model.kind={kind!r}, data.name={config.data.name!r}"
    )
  check_known_keys(
    config.data, text_data_config() if kind == "rnn" else image_data_config(), "data"
  )
  if kind != "rnn":
    try:
      if dry_run:
        if config.data.name not in vision.IMAGE_SHAPES:
          raise vision.DataUnavailableError(f"unknown data.name {config.data.name!r}")
      else:
        vision.check_available(config.data)
    except vision.DataUnavailableError as e:
      raise ConfigError(str(e)) from None


def learning_rule(config: ml_collections.ConfigDict) -> LearningRule:
  """The `rule` section (the method comes from `config.method`)."""
  return settings_from_section(LearningRule, config.rule, "rule", method=config.method)


@dataclasses.dataclass(frozen=True)
class Task:
  """Arrays to train and evaluate on; inputs are images [N, H, W, C] or tokens [N, T]."""

  train: tuple[np.ndarray, np.ndarray]
  evals: dict[str, tuple[np.ndarray, np.ndarray]]
  input_shape: tuple[int, ...]
  num_classes: int


def load_task(config: ml_collections.ConfigDict) -> Task:
  """Train arrays and named eval sets ("test", plus "validation" held out of train if asked)."""
  data = config.data
  if data.name == TEXT_TASK:
    train, test = char_tasks.load_char_task(data.seq_len, data.max_chars, data.test_fraction)
    train, test = (train.inputs, train.targets), (test.inputs, test.targets)
    num_classes = len(char_tasks.ALPHABET)
  else:
    train, test = vision.load_images(data)
    train, test = (train.images, train.labels), (test.images, test.labels)
    num_classes = vision.NUM_CLASSES
  evals = {"test": test}
  if data.validation_fraction > 0:
    order = np.random.RandomState(data.split_seed).permutation(len(train[0]))
    num_val = int(round(data.validation_fraction * len(order)))
    evals["validation"] = tuple(a[order[:num_val]] for a in train)
    train = tuple(a[order[num_val:]] for a in train)
  return Task(train, evals, tuple(train[0].shape[1:]), num_classes)


def build_trainer(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> Trainer:
  """The trainer of the run `config` describes, on `devices` (default: all)."""
  return _trainer(DLLSettings.from_config(config), load_task(config), workdir, devices)


def _trainer(
  settings: DLLSettings, task: Task, workdir: str, devices: Sequence[jax.Device] | None
) -> Trainer:
  net = build_net(settings.model, settings.rule, task.input_shape, task.num_classes)
  objective = Classification(
    lambda params, state, x, train: (net.apply(params, x), state), settings.train.label_smoothing
  )

  def program(total_steps: int) -> Program:
    tx, schedule = build_feedback_optimizer(
      settings.optimizer, total_steps, settings.rule.learns_theta
    )
    return Program(
      objective=objective,
      init_variables=lambda rng: {"params": net.init(rng)},
      tx=tx,
      schedule=schedule,
    )

  return epoch_trainer(
    train=settings.train,
    checkpoint=settings.checkpoint,
    seed=settings.seed,
    program_for_steps=program,
    arrays=_arrays(task.train),
    eval_sets={name: _arrays(split) for name, split in task.evals.items()},
    mesh_cfg=settings.mesh,
    workdir=workdir,
    devices=devices,
    wandb=settings.wandb,
    summary_fields={
      "method": settings.rule.method,
      "model": settings.model.kind,
      "data": settings.data.name,
      "seed": settings.seed,
    },
  )


def _arrays(split: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
  return {"inputs": split[0], "targets": split[1].astype(np.int32)}


def run(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
  """Trains `config.train.epochs` epochs (resuming from the latest checkpoint) and returns the
  summary it writes to summary.json."""
  return build_trainer(config, workdir, devices).run()


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles one training step on abstract inputs (no data read) and writes dry_run.json."""
  settings = DLLSettings.from_config(config)
  batch = settings.train.batch_size
  if config.data.name == TEXT_TASK:
    input_shape, num_classes, dtype = (config.data.seq_len,), len(char_tasks.ALPHABET), jnp.int32
    labels_shape: tuple[int, ...] = (batch, config.data.seq_len)
  else:
    input_shape, num_classes = vision.IMAGE_SHAPES[config.data.name], vision.NUM_CLASSES
    dtype, labels_shape = jnp.float32, (batch,)
  placeholder = (shape_only((batch, *input_shape), dtype), shape_only(labels_shape, np.int32))
  task = Task(placeholder, {}, tuple(input_shape), num_classes)
  trainer = _trainer(settings, task, workdir, None)
  started = time.perf_counter()
  compiled = trainer.compile()
  cost = compiled.cost_analysis() or {}
  result = {
    "method": settings.rule.method,
    "model": settings.model.kind,
    "params": trainer.num_params(),
    "flops_per_step": float(cost.get("flops", float("nan"))),
    "bytes_per_device": trainer.bytes_per_device,
    "compile_s": round(time.perf_counter() - started, 2),
  }
  fileio.write_json_atomic(os.path.join(workdir, "dry_run.json"), result)
  return result
