"""Experiment `dll`: train an MLP, CNN or RNN with backprop (bp), feedback alignment (fa, or the
paper's reference FA fa_ref: sign feedback, plain SGD), Dendritic Localized Learning (dll) or DLL
with frozen Theta (dll_fa), chosen by `config.method`.

DLL is an ordinary objective: smoothed cross-entropy summed over predictions, whose `jax.grad`
through the nets' custom-VJP layers (jaxlab.models.dll) is backprop's gradient for bp and the
local updates for the other rules. The trainer logs once per epoch, with the per-layer alignment
cosines (`alignment_metrics`: cos_theta_w/<layer>, cos_grad_bp/<layer>) on one fixed training
batch every `diagnostics.every` epochs, evaluates accuracy on the test split (and a validation
split, when held out) every `train.eval_every` epochs, checkpoints every `checkpoint.every`
epochs and writes summary.json with `test_accuracy` (next-character accuracy for the RNN task)
and the last cosines; `run` then plots the cosines against the epoch into alignment.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
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
from jaxlab.models.dll_nets import Net, NetConfig, Params, build_net
from jaxlab.objectives.supervised import Classification
from jaxlab.parallel.mesh import default_mesh_config
from jaxlab.train.checkpoints import CheckpointSettings
from jaxlab.train.epochs import EpochTrainSettings, epoch_trainer, shape_only, validate_batch_split
from jaxlab.train.optimizer import FeedbackAdamSettings, build_feedback_optimizer
from jaxlab.train.trainer import HookFn, Program, Trainer
from jaxlab.train.wandb_config import WandbSettings
from jaxlab.train.wandb_logging import wandb_settings

TEXT_TASK = "stdlib_text"
ALIGNMENT_PLOT = "alignment.png"
ALIGNMENT_TITLES = {
  "cos_theta_w": "cos(Theta_l, W_l)",
  "cos_grad_bp": "cos(rule's update of W_l, backprop gradient)",
}


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
  config.diagnostics = section_defaults(DiagnosticsSettings)
  return config


@dataclasses.dataclass(frozen=True)
class DiagnosticsSettings:
  """The `diagnostics` section: the alignment cosines (`alignment_metrics`) every `every` epochs
  and at the end; 0 measures none and draws no alignment.png."""

  every: int = 1


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
  diagnostics: DiagnosticsSettings = DiagnosticsSettings()

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
      diagnostics=settings_from_section(
        DiagnosticsSettings, config.get("diagnostics"), "diagnostics"
      ),
    )


def image_data_config(name: str = "digits") -> ml_collections.ConfigDict:
  """Image data: digits split by (test_fraction, split_seed); other sets from npz_path, idx_dir
  or tfds."""
  return ml_collections.ConfigDict(
    dict(
      name=name,
      npz_path="",
      idx_dir="",
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
    if settings.diagnostics.every < 0:
      raise ValueError(f"diagnostics.every must be at least 0, got {settings.diagnostics.every}")
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
  objective = _classification(net, settings.train.label_smoothing)

  def program(total_steps: int) -> Program:
    tx, schedule = build_feedback_optimizer(
      settings.optimizer, total_steps, settings.rule.learns_theta, settings.rule.plain_sgd
    )
    return Program(
      objective=objective,
      init_variables=lambda rng: {"params": net.init(rng)},
      tx=tx,
      schedule=schedule,
    )

  trainer = epoch_trainer(
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
  if settings.diagnostics.every:
    every = settings.diagnostics.every * trainer.settings.log_every  # log_every: one epoch
    trainer.add_hook(_alignment_hook(settings, net, task), every=every)
  return trainer


def _classification(net: Net, label_smoothing: float) -> Classification:
  """The training objective on `net` (smoothed cross-entropy summed over predictions)."""
  return Classification(
    lambda params, state, x, train: (net.apply(params, x), state), label_smoothing
  )


def _arrays(split: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
  return {"inputs": split[0], "targets": split[1].astype(np.int32)}


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """Cosine of the angle between `a` and `b` as flat vectors, each first divided by its largest
  magnitude so huge updates (FA has no clipping) do not overflow; nan if either is zero or not
  finite."""
  a, b = (x.ravel() / jnp.max(jnp.abs(x)) for x in (a, b))
  return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def alignment_metrics(
  rule: LearningRule, net: Net, bp_net: Net, label_smoothing: float
) -> Callable[[Params, dict[str, jax.Array]], dict[str, jax.Array]]:
  """Jitted (params, batch) -> per-layer alignment cosines, layers named by `net.layers`:

  cos_theta_w/<layer>: cos(Theta_l, W_l), both in W's (in, out) layout, which is the comparable
    orientation: the error goes down as delta Theta_l^T where backprop has delta W_l^T (the
    paper's B_l against W_l^T). Only layers whose Theta carries an error (not the first layer,
    nor the RNN's input weights), and not for bp, which has no feedback path.
  cos_grad_bp/<layer>: cos between the update `rule` makes to W_l on `batch` (the cotangent that
    jax.grad returns through net's custom VJPs, scaled and clipped as in training) and backprop's
    gradient of the same loss (jax.grad through `bp_net`, the same net in bp mode) at the same
    params. Every layer; for bp it is 1 up to rounding.
  """
  objectives = [_classification(n, label_smoothing) for n in (net, bp_net)]

  def grads(objective, params, batch):
    return jax.grad(lambda p: objective(p, {}, {}, batch, None, True).loss_sum)(params)

  def metrics(params, batch):
    out = {}
    if rule.method != "bp":
      for name, (w, theta) in net.layers(params).items():
        if theta is not None:
          out[f"cos_theta_w/{name}"] = cosine(theta, w)
    rule_grads, bp_grads = (net.layers(grads(o, params, batch)) for o in objectives)
    for name, (rule_w, _) in rule_grads.items():
      out[f"cos_grad_bp/{name}"] = cosine(rule_w, bp_grads[name][0])
    return out

  return jax.jit(metrics)


def _alignment_hook(settings: DLLSettings, net: Net, task: Task) -> HookFn:
  """A trainer hook logging `alignment_metrics` on one fixed batch of `train.batch_size` training
  examples (the size the rule's clipping sees in training), drawn once with the run's seed."""
  bp_rule = LearningRule("bp", form=settings.rule.form)
  bp_net = build_net(settings.model, bp_rule, task.input_shape, task.num_classes)
  metrics = alignment_metrics(settings.rule, net, bp_net, settings.train.label_smoothing)
  num_train = len(task.train[0])
  rows = np.random.RandomState(settings.seed).choice(
    num_train, min(settings.train.batch_size, num_train), replace=False
  )
  batch = _arrays(tuple(a[np.sort(rows)] for a in task.train))

  def hook(state, step):
    del step
    return {k: float(v) for k, v in jax.device_get(metrics(state.params, batch)).items()}

  return hook


def plot_alignment(workdir: str, steps_per_epoch: int) -> str | None:
  """Plots the cos_* columns of workdir's metrics.jsonl against the epoch (one panel per kind,
  one line per layer) into workdir/alignment.png; returns its path, or None without such rows."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if not fileio.isfile(metrics_path):
    return None
  series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}  # kind -> layer -> (x, y)
  for line in fileio.read_text(metrics_path).splitlines():
    row = json.loads(line) if line.strip() else {}
    for key, value in row.items():
      if key.startswith("cos_"):
        kind, layer = key.split("/", 1)
        epochs, values = series.setdefault(kind, {}).setdefault(layer, ([], []))
        epochs.append(row["step"] / steps_per_epoch)
        values.append(float(value))
  if not series:
    return None
  # The object-oriented API: no pyplot backend is switched, so a notebook's inline plots survive.
  from matplotlib.figure import Figure
  from matplotlib.ticker import MaxNLocator

  def natural(name):  # layer2 before layer10
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

  names = sorted({layer for layers in series.values() for layer in layers}, key=natural)
  fig = Figure(figsize=(6 * len(series), 3.5))
  axes = fig.subplots(1, len(series), squeeze=False)
  for ax, (kind, layers) in zip(axes[0], sorted(series.items(), reverse=True)):
    for layer in sorted(layers, key=natural):
      epochs, values = layers[layer]
      color = f"C{names.index(layer) % 10}"  # a layer keeps its colour across panels
      ax.plot(epochs, values, marker="o", markersize=3, color=color, label=layer)
    ax.axhline(0.0, color="gray", linewidth=0.5)
    ax.set_title(ALIGNMENT_TITLES.get(kind, kind), fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  path = os.path.join(workdir, ALIGNMENT_PLOT)
  fileio.save_figure(fig, path, dpi=110)
  return path


def run(
  config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
  """Trains `config.train.epochs` epochs (resuming from the latest checkpoint), plots the alignment
  cosines into alignment.png and returns the summary it writes to summary.json."""
  summary = build_trainer(config, workdir, devices).run()
  if jax.process_index() == 0:
    plot_alignment(workdir, summary["steps_per_epoch"])
  return summary


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
