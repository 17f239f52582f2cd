"""Config files and command-line overrides, with one-line errors for bad input.

Config files follow the big_vision convention: a Python file with `get_config(arg)` returning an
`ml_collections.ConfigDict`; `path.py:arg` passes `arg` (e.g. `smoke` or `key=val,flag`).
Every loaded config also gets the sections all studies share (`logging`: the W&B hook) with the
defaults of whatever its file leaves out. Overrides are `--config.a.b=value`, parsed to the type
of the existing field.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
import reprlib
from collections.abc import Iterable
from typing import Any, TypeVar

import ml_collections

from jaxlab import fileio
from jaxlab.train.wandb_config import logging_defaults

_Settings = TypeVar("_Settings")


class ConfigError(ValueError):
  """Bad user input in a config or an override; the message is one line meant for the user."""


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` and returns `get_config(arg)` (or `get_config()` without arg)."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise ConfigError(f"config file must be a .py file, got {path!r}")
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  module_name = "jaxlab_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"config file {path}:{e.lineno}: syntax error: {e.msg}") from None
  except Exception as e:  # a bad import or any error while the file runs
    raise ConfigError(f"config file {path}: {type(e).__name__}: {_first_line(e)}") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} defines no get_config(arg)")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ConfigError:
    raise
  except Exception as e:
    raise ConfigError(
      f"config file {path}: get_config failed: {type(e).__name__}: {_first_line(e)}"
    ) from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config in {path} must return an ml_collections.ConfigDict")
  add_shared_sections(config)
  return config


def shared_sections() -> ml_collections.ConfigDict:
  """The sections every study's config has, whatever its file sets: `logging` (the W&B hook)."""
  return ml_collections.ConfigDict({"logging": logging_defaults()})


def add_shared_sections(config: ml_collections.ConfigDict) -> None:
  """Adds to `config`, in place, the keys of `shared_sections()` it lacks (the values it sets
  stay), so `--config.logging.wandb.enabled=True` works with every config file."""

  def merge(node: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    for key, value in defaults.items():
      if key not in node:
        node[key] = value
      elif isinstance(value, ml_collections.ConfigDict) and isinstance(
        node[key], ml_collections.ConfigDict
      ):
        merge(node[key], value)

  with config.unlocked():
    merge(config, shared_sections())


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a `get_config` argument `a=1,flag,b=x` against typed defaults.

  A bare word sets a bool default to True; unknown names raise ConfigError.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, eq, value = item.partition("=")
    if key not in defaults:
      raise ConfigError(_unknown_key_message("unknown config argument", key, defaults))
    if not eq:
      if not isinstance(defaults[key], bool):
        raise ConfigError(f"config argument {key!r} needs a value ({key}=...)")
      parsed[key] = True
    else:
      _set(parsed, key, _parse_value(value, defaults[key], key), value, key)
  return parsed


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All dotted leaf keys of a config, e.g. `model.d_model`."""
  keys = []
  for key, value in config.items():
    full = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, full + "."))
    else:
      keys.append(full)
  return keys


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Iterable[tuple[str, str]]
) -> None:
  """Applies `(dotted.key, raw string)` overrides in place, typed by the current values."""
  valid = flat_keys(config)
  for key, raw in overrides:
    parent, leaf = _locate(config, key, valid)
    _set(parent, leaf, _parse_value(raw, parent[leaf], key), raw, key)


def _locate(config: ml_collections.ConfigDict, key: str, valid: list[str]):
  node = config
  parts = key.split(".")
  for part in parts[:-1]:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(_unknown_key_message("unknown config key", key, valid))
    node = node[part]
  if parts[-1] not in node or isinstance(node[parts[-1]], ml_collections.ConfigDict):
    raise ConfigError(_unknown_key_message("unknown config key", key, valid))
  return node, parts[-1]


def _unknown_key_message(what: str, key: str, valid: Iterable[str]) -> str:
  valid = list(valid)
  close = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
  leaf_close = [v for v in valid if v.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
  suggestion = (leaf_close or close or [None])[0]
  hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
  return f"{what} {key!r}{hint}"


# Echoes of user input in error messages: one line (repr escapes newlines) of bounded length.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def _short(value: Any) -> str:
  return _SHORT_REPR.repr(value)


def _literal(raw: str) -> Any:
  """ast.literal_eval with every way it rejects text as a ValueError: besides ValueError and
  SyntaxError it raises TypeError (`{[]: 1}`), and RecursionError or MemoryError on deep nesting."""
  try:
    return ast.literal_eval(raw)
  except (SyntaxError, TypeError, RecursionError, MemoryError) as e:
    raise ValueError(raw) from e


def _set(node: ml_collections.ConfigDict, leaf: str, value: Any, raw: str, key: str) -> None:
  """node[leaf] = value; ConfigDict's own refusals (e.g. a dict literal with dotted keys for a
  None field) become a one-line ConfigError."""
  try:
    node[leaf] = value
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ConfigError(f"config key {key!r} cannot hold {_short(raw)}: {reason}") from None


def _parse_value(raw: str, current: Any, key: str) -> Any:
  """Parses `raw` to the type of `current`; None-valued fields take a Python literal or a string."""
  expected = type(current)
  try:
    if current is None:
      try:
        return _literal(raw)
      except ValueError:
        return raw
    if isinstance(current, bool):
      lowered = raw.lower()
      if lowered in ("true", "1", "yes"):
        return True
      if lowered in ("false", "0", "no"):
        return False
      raise ValueError(raw)
    if isinstance(current, int):
      return int(raw)
    if isinstance(current, float):
      return float(raw)
    if isinstance(current, str):
      return raw
    if isinstance(current, (tuple, list)):
      value = _literal(raw)
      if not isinstance(value, (tuple, list)):
        raise ValueError(raw)
      return expected(value)
  except (ValueError, SyntaxError):
    pass
  else:
    raise ConfigError(f"config key {key!r} has unsupported type {expected.__name__}")
  raise ConfigError(f"config key {key!r} expects {expected.__name__}, got {_short(raw)}")


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records the resolved config as `workdir/config.json` (what evaluation tools reload)."""
  # Atomically: a config.json cut short by an interrupt would make the workdir unreadable.
  fileio.write_text_atomic(
    os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2)
  )


def settings_from_section(
  cls: type[_Settings], section: ml_collections.ConfigDict | dict, name: str, **extra: Any
) -> _Settings:
  """Reads a config section into the frozen dataclass `cls` (the one place its defaults live).

  Unknown keys are a one-line ConfigError naming the nearest field; fields the section leaves out
  take the dataclass default; `extra` fills fields that come from elsewhere in the config.
  """
  fields = {f.name: f for f in dataclasses.fields(cls)}
  values = dict(section.items()) if section is not None else {}
  for key in values:
    if key not in fields:
      raise ConfigError(
        _unknown_key_message("unknown config key", f"{name}.{key}", [f"{name}.{f}" for f in fields])
      )
  unknown_extra = sorted(set(extra) - set(fields))
  if unknown_extra:
    raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown_extra)}")
  values.update(extra)
  missing = [
    f
    for f, spec in fields.items()
    if f not in values
    and spec.default is dataclasses.MISSING
    and spec.default_factory is dataclasses.MISSING
  ]
  if missing:
    raise ConfigError(f"config section {name!r} needs {', '.join(f'{name}.{m}' for m in missing)}")
  return cls(**{k: _plain(v) for k, v in values.items()})


def section_defaults(cls: type) -> ml_collections.ConfigDict:
  """A ConfigDict of `cls`'s defaults: what presets start from, so no default is written twice.

  Fields without a default (e.g. model shapes) are left out; the preset must set them.
  """
  defaults = {}
  for field in dataclasses.fields(cls):
    if field.default is not dataclasses.MISSING:
      defaults[field.name] = field.default
    elif field.default_factory is not dataclasses.MISSING:
      defaults[field.name] = field.default_factory()
  return ml_collections.ConfigDict(defaults)


def _plain(value: Any) -> Any:
  """ConfigDict values as plain Python (nested sections become dicts, lists stay lists)."""
  if isinstance(value, ml_collections.ConfigDict):
    return value.to_dict()
  return value


def check_known_keys(
  section: ml_collections.ConfigDict, known: ml_collections.ConfigDict, name: str
) -> None:
  """Raises ConfigError for a key of `section` (nested sections too) that `known` lacks: for
  sections a whole module reads, such as `data` and `mesh`, instead of a dataclass."""
  valid = [f"{name}.{key}" for key in flat_keys(known)]
  for key in flat_keys(section):
    if f"{name}.{key}" not in valid:
      raise ConfigError(_unknown_key_message("unknown config key", f"{name}.{key}", valid))


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else ""


# Sections that define what a run is: a workdir's checkpoints only fit a config that agrees on them.
RUN_IDENTITY = ("experiment", "model", "method", "task", "rule", "data.tokenizer")
# Model fields that change how a run computes, not what it has learned: free to change on resume.
RUNTIME_ONLY = (
  "model.attention_impl",
  "model.attention_query_block",
  "model.loss_impl",
  "model.neuron_impl",
  "model.remat_policy",
  "model.dtype",
)


def run_identity_conflicts(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The fields (at most three, `key stored -> new`) where `config` differs from the run already
  in `workdir` on what defines the run (RUN_IDENTITY); "" when they agree or there is no run."""
  path = os.path.join(workdir, "config.json")
  if not fileio.isfile(path):
    return ""
  try:
    stored = ml_collections.ConfigDict(fileio.read_json(path))
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is unreadable ({_first_line(e)}); use another --workdir") from None
  old, new = _identity_values(stored), _identity_values(config)
  for key in RUNTIME_ONLY:
    old.pop(key, None)
    new.pop(key, None)
  differing = [
    f"{key} {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
    for key in sorted(set(old) | set(new))
    if _normalized(old.get(key)) != _normalized(new.get(key))
  ]
  more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
  return ", ".join(differing[:3]) + more


def _identity_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
  values = {}
  for key in flat_keys(config):
    if any(key == p or key.startswith(p + ".") for p in RUN_IDENTITY):
      node = config
      for part in key.split("."):
        node = node[part]
      values[key] = node
  return values


def _normalized(value: Any) -> Any:
  """JSON round trips turn tuples into lists."""
  return list(value) if isinstance(value, tuple) else value
