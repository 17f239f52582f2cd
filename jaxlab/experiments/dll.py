"""Experiment `dll`: train an MLP, CNN or RNN with backprop (bp), feedback alignment (fa),
Dendritic Localized Learning (dll) or DLL with frozen Theta (dll_fa), chosen by `config.method`.

Per epoch it logs train loss and accuracies to metrics.jsonl and TensorBoard, checkpoints every
`checkpoint.every` epochs (resuming from the workdir automatically) and ends by writing
summary.json with `test_accuracy` (next-character accuracy for the RNN task).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab.config import ConfigError, parse_arg
from jaxlab.data import char_tasks, vision
from jaxlab.models.dll import METHODS, LearningRule
from jaxlab.models.dll_nets import MODEL_KINDS, POOLS, build_net
from jaxlab.train.checkpoints import Checkpointer
from jaxlab.train.dll_loop import (build_optimizer, create_state, make_accuracy, make_train_epoch,
                                   make_train_step)
from jaxlab.train.metrics import MetricsWriter, Progress

logger = logging.getLogger(__name__)
TEXT_TASK = "stdlib_text"


def parse_method_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config arg such as `dll_fa`, `bp,seed=1` or `method=fa`: a bare method name picks
  the method, everything else goes through jaxlab.config.parse_arg against `defaults`."""
  items = [item for item in (arg or "").split(",") if item]
  named = [item for item in items if item in METHODS]
  for item in items:
    if "=" not in item and item not in METHODS and not isinstance(defaults.get(item), bool):
      raise ConfigError(f"unknown config argument {item!r}; a bare word names the method, one of "
                        f"{', '.join(METHODS)}")
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
  config.rule = ml_collections.ConfigDict(dict(form="inner", theta_sign=1.0, clip=50.0, scale=2.0))
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=1e-3, theta_lr_ratio=0.1, b1=0.9, b2=0.999, eps=1e-8))
  config.train = ml_collections.ConfigDict(dict(
      epochs=50, batch_size=64, label_smoothing=0.1, eval_batch=1000))
  config.checkpoint = ml_collections.ConfigDict(dict(every=10, keep=2, use_async=False))
  return config


def image_data_config(name: str = "digits") -> ml_collections.ConfigDict:
  """Image data: digits split by (test_fraction, split_seed); other sets from npz_path or tfds."""
  return ml_collections.ConfigDict(dict(name=name, npz_path="", tfds_data_dir="",
                                        test_fraction=0.2, validation_fraction=0.0, split_seed=0))


def text_data_config(seq_len: int = 32, max_chars: int = 100_000) -> ml_collections.ConfigDict:
  """Next-character prediction on the standard library's reference manual topics."""
  return ml_collections.ConfigDict(dict(name=TEXT_TASK, seq_len=seq_len, max_chars=max_chars,
                                        test_fraction=0.1, validation_fraction=0.0, split_seed=0))


def validate(config: ml_collections.ConfigDict, dry_run: bool = False) -> None:
  """Checks the config (and, unless dry_run, that the data is there); raises ConfigError."""
  try:
    rule = learning_rule(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  kind = config.model.kind
  if kind not in MODEL_KINDS:
    raise ConfigError(f"unknown model.kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
  if rule.form == "outer" and kind != "mlp":
    raise ConfigError(f"rule.form='outer' is available for model.kind='mlp' only, not {kind!r}")
  if kind == "cnn":
    if len(config.model.pools) != len(config.model.channels):
      raise ConfigError("model.pools needs one entry per model.channels entry")
    if any(p not in POOLS for p in config.model.pools):
      raise ConfigError(f"model.pools entries must be one of {', '.join(POOLS)}")
  for key in ("train.epochs", "train.batch_size", "train.eval_batch", "checkpoint.every"):
    section, field = key.split(".")
    if config[section][field] < 1:
      raise ConfigError(f"{key} must be at least 1, got {config[section][field]}")
  if config.optimizer.lr <= 0:
    raise ConfigError(f"optimizer.lr must be positive, got {config.optimizer.lr}")
  if not 0.0 <= config.data.validation_fraction < 1.0:
    raise ConfigError(f"data.validation_fraction must be in [0, 1), got "
                      f"{config.data.validation_fraction}")
  if (kind == "rnn") != (config.data.name == TEXT_TASK):
    raise ConfigError(f"model.kind='rnn' goes with data.name={TEXT_TASK!r} and only it; got "
                      f"model.kind={kind!r}, data.name={config.data.name!r}")
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
  return LearningRule(method=config.method, form=config.rule.form,
                      theta_sign=float(config.rule.theta_sign), clip=float(config.rule.clip),
                      scale=float(config.rule.scale))


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


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config.train.epochs` epochs (resuming from the latest checkpoint) and returns the
  summary it writes to summary.json."""
  task = load_task(config)
  train_cfg = config.train
  steps_per_epoch = len(task.train[0]) // train_cfg.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"train.batch_size={train_cfg.batch_size} exceeds the "
                     f"{len(task.train[0])} training examples")
  rule = learning_rule(config)
  net = build_net(config.model, rule, task.input_shape, task.num_classes)
  tx, schedule = build_optimizer(config.optimizer, train_cfg.epochs * steps_per_epoch,
                                 rule.learns_theta)
  state = create_state(net.init, tx, config.seed)
  train_epoch = make_train_epoch(make_train_step(net.apply, tx, train_cfg.label_smoothing),
                                 train_cfg.batch_size, steps_per_epoch)
  accuracy = make_accuracy(net.apply, train_cfg.eval_batch)
  train_x, train_y = (jnp.asarray(a) for a in task.train)

  checkpointer = Checkpointer(workdir, config.checkpoint)
  start_epoch = 0
  if checkpointer.latest_step() is not None:
    state, data_state = checkpointer.restore_like(state)
    start_epoch = int(data_state["epoch"])
    logger.info("resumed from epoch %d", start_epoch)

  writer, progress = MetricsWriter(workdir), Progress(train_cfg.epochs, initial=start_epoch)
  epoch_times, train_loss, metrics = [], float("nan"), {}
  for epoch in range(start_epoch + 1, train_cfg.epochs + 1):
    started = time.perf_counter()
    state, loss = train_epoch(state, train_x, train_y)
    train_loss = float(loss)
    epoch_times.append(time.perf_counter() - started)
    metrics = {f"{name}_accuracy": accuracy(state.params, *arrays)
               for name, arrays in task.evals.items()}
    metrics.update(train_loss=train_loss, epoch_time_s=epoch_times[-1],
                   lr=float(schedule(int(state.step))))
    writer.write(epoch, metrics)
    progress.update(epoch, {"loss": train_loss})
    if epoch % config.checkpoint.every == 0 or epoch == train_cfg.epochs:
      checkpointer.save(epoch, state, {"epoch": epoch})
  checkpointer.close()
  writer.close()
  progress.close()
  if not metrics:  # nothing left to train: report the restored state
    metrics = {f"{name}_accuracy": accuracy(state.params, *arrays)
               for name, arrays in task.evals.items()}

  summary = {
      "method": config.method, "model": config.model.kind, "data": config.data.name,
      "seed": config.seed, "epochs": train_cfg.epochs, "steps_per_epoch": steps_per_epoch,
      "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)),
      **{k: v for k, v in metrics.items() if k.endswith("_accuracy")},
      "final_train_loss": train_loss,
      # The first epoch of a process includes compilation; the median of the rest is the speed.
      "epoch_time_s": statistics.median(epoch_times[1:] or epoch_times or [float("nan")]),
      "first_epoch_time_s": epoch_times[0] if epoch_times else float("nan"),
  }
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  logger.info("summary: %s", summary)
  return summary


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Compiles one training step on abstract inputs (no data read) and writes dry_run.json."""
  if config.data.name == TEXT_TASK:
    input_shape, num_classes, dtype = (config.data.seq_len,), len(char_tasks.ALPHABET), jnp.int32
  else:
    input_shape, num_classes = vision.IMAGE_SHAPES[config.data.name], vision.NUM_CLASSES
    dtype = jnp.float32
  rule = learning_rule(config)
  net = build_net(config.model, rule, input_shape, num_classes)
  tx, _ = build_optimizer(config.optimizer, 1, rule.learns_theta)
  state = jax.eval_shape(lambda: create_state(net.init, tx, config.seed))
  batch = config.train.batch_size
  labels_shape = (batch, *input_shape[:1]) if config.data.name == TEXT_TASK else (batch,)
  step = make_train_step(net.apply, tx, config.train.label_smoothing)
  started = time.perf_counter()
  compiled = jax.jit(step).lower(state, jax.ShapeDtypeStruct((batch, *input_shape), dtype),
                                 jax.ShapeDtypeStruct(labels_shape, jnp.int32)).compile()
  cost = compiled.cost_analysis() or {}
  result = {
      "method": config.method, "model": config.model.kind,
      "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)),
      "flops_per_step": float(cost.get("flops", float("nan"))),
      "compile_s": round(time.perf_counter() - started, 2),
  }
  with open(os.path.join(workdir, "dry_run.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result
