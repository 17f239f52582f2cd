"""Hugging Face LLaMA checkpoints <-> jaxlab runs.

  python -m jaxlab.interop.hf import --hf_dir DIR --workdir RUN [--param_dtype float32]
  python -m jaxlab.interop.hf export --workdir RUN --out DIR [--dtype bfloat16] [--max_shard_mb N]

`import` turns a `LlamaForCausalLM` directory (config.json + model.safetensors or a sharded index,
tokenizer.json when present) into a jaxlab run directory: an `lm_pretrain` config.json whose model
section reproduces the checkpoint, and an orbax checkpoint (step 0, parameters only) that every
jaxlab tool loads and `checkpoint.init_from=RUN` fine-tunes. `export` writes a directory that
`transformers.AutoModelForCausalLM.from_pretrained` loads, from any jaxlab LM run.

Both stream. An import first has orbax lay out the checkpoint (metadata and zarr arrays chunked
per layer, written from zero-stride placeholders), then writes each memory-mapped safetensors
tensor into its layer's slice with tensorstore, a few chunks at a time; an export reads one
slab of chunks of one parameter at a time (one layer for imported runs) and writes safetensors
tensor by tensor. Peak memory is a tensor plus buffers, not the model (docs/interop.md). Bad input
is one line on stderr and exit status 2, checked before anything is written; outputs are built in
a temporary directory beside the target and renamed into place, so a failed or interrupted
command leaves nothing behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import itertools
import json
import math
import os
import resource
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jaxlab  # noqa: F401  (selects the JAX platform before jax is imported)
from jaxlab.cli import OneLineParser, exit_cleanly_on_interrupt, fail
from jaxlab.config import ConfigError
from jaxlab.interop import safetensors_io
from jaxlab.interop.hf_config import hf_config, model_fields
from jaxlab.models.transformer import DTYPES, TransformerConfig

CONFIG_FILE = "config.json"
# Tokenizer files copied along (import: from the HF directory; export: from beside the run's
# tokenizer.json).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Old checkpoints store RoPE's inverse frequencies; they are recomputed, never read.
_IGNORED_SUFFIX = "rotary_emb.inv_freq"
# Largest orbax chunk of an imported parameter: bounds what tensorstore buffers per array.
_CHUNK_BYTES = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class WeightMapping:
  """One Hugging Face weight and the jaxlab parameter it becomes (`{i}`: the layer index)."""

  hf_name: str
  leaf: tuple[str, ...]  # path under params; under "layers" (stacked) when per_layer
  per_layer: bool
  hf_shape: tuple[int, ...]
  to_jaxlab: Callable[[Any], Any]
  to_hf: Callable[[Any], Any]


def weight_mappings(cfg: TransformerConfig) -> list[WeightMapping]:
  """Every weight of a LLaMA with `cfg`'s shapes. HF stores linear layers as [out, in] and
  jaxlab as [in, out] (attention split per head); both keep each head's features in
  rotate-half order, so no permutation is needed."""
  d, f, v, hd = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.head_dim
  q, kv = cfg.n_heads * hd, cfg.n_kv_heads * hd

  def heads(n: int):
    return (lambda w: w.T.reshape(d, n, hd), lambda a: a.reshape(d, n * hd).T)

  same = (lambda w: w, lambda a: a)
  transpose = (lambda w: w.T, lambda a: a.T)
  out_proj = (lambda w: w.T.reshape(cfg.n_heads, hd, d), lambda a: a.reshape(q, d).T)
  mappings = [WeightMapping("model.embed_tokens.weight", ("embedding",), False, (v, d), *same)]
  for name, leaf, shape, convert in (
    ("self_attn.q_proj", ("attention", "wq"), (q, d), heads(cfg.n_heads)),
    ("self_attn.k_proj", ("attention", "wk"), (kv, d), heads(cfg.n_kv_heads)),
    ("self_attn.v_proj", ("attention", "wv"), (kv, d), heads(cfg.n_kv_heads)),
    ("self_attn.o_proj", ("attention", "wo"), (d, q), out_proj),
    ("mlp.gate_proj", ("mlp", "w_gate"), (f, d), transpose),
    ("mlp.up_proj", ("mlp", "w_up"), (f, d), transpose),
    ("mlp.down_proj", ("mlp", "w_down"), (d, f), transpose),
    ("input_layernorm", ("attention_norm", "scale"), (d,), same),
    ("post_attention_layernorm", ("mlp_norm", "scale"), (d,), same),
  ):
    mappings.append(WeightMapping(f"model.layers.{{i}}.{name}.weight", leaf, True, shape, *convert))
  mappings.append(WeightMapping("model.norm.weight", ("final_norm", "scale"), False, (d,), *same))
  if not cfg.tie_embeddings:
    mappings.append(WeightMapping("lm_head.weight", ("lm_head",), False, (v, d), *transpose))
  return mappings


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One HF tensor of a model: its name, mapping and layer (None for non-layer weights)."""

  name: str
  mapping: WeightMapping
  layer: int | None


def model_tensors(cfg: TransformerConfig) -> list[Tensor]:
  """All HF tensors of `cfg`'s model, grouped by jaxlab parameter (layers in order)."""
  tensors = []
  for mapping in weight_mappings(cfg):
    layers = range(cfg.n_layers) if mapping.per_layer else [None]
    tensors += [Tensor(mapping.hf_name.format(i=i), mapping, i) for i in layers]
  return tensors


def abstract_params(cfg: TransformerConfig) -> Any:
  """The parameter tree of `cfg`'s Transformer as ShapeDtypeStructs (nothing allocated)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from jaxlab.models.transformer import Transformer

  model = Transformer(cfg)
  tokens = jnp.zeros((1, 1), jnp.int32)
  return nn.unbox(jax.eval_shape(lambda rng: model.init(rng, tokens), jax.random.PRNGKey(0)))[
    "params"
  ]


def _param_path(cfg: TransformerConfig, tensor: Tensor) -> tuple[tuple[str, ...], int | None]:
  """(path in the params tree, index on its stacked layer axis or None) of `tensor`."""
  if tensor.layer is None:
    return tensor.mapping.leaf, None
  if cfg.scan_layers:
    return ("layers",) + tensor.mapping.leaf, tensor.layer
  return (f"layers_{tensor.layer}",) + tensor.mapping.leaf, None


# ---------------------------------------------------------------------------------- import


def read_hf_config(hf_dir: str) -> dict:
  """The parsed config.json of a Hugging Face model directory; ValueError (one line) if absent
  or not JSON."""
  if not os.path.isdir(hf_dir):
    raise ValueError(f"--hf_dir {hf_dir} is not a directory")
  path = os.path.join(hf_dir, CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{hf_dir} has no {CONFIG_FILE}") from None
  except (ValueError, UnicodeDecodeError, RecursionError):
    raise ValueError(f"{path} is not JSON") from None


def import_plan(
  cfg: TransformerConfig, tensors: dict[str, safetensors_io.TensorInfo]
) -> list[tuple[Tensor, safetensors_io.TensorInfo]]:
  """Each model tensor with where its bytes lie, in file order; ValueError (one line) for a
  missing, misshapen or unexpected tensor."""
  plan = []
  expected = model_tensors(cfg)
  for tensor in expected:
    info = tensors.get(tensor.name)
    if info is None:
      raise ValueError(f"the checkpoint has no tensor {tensor.name}")
    if info.shape != tensor.mapping.hf_shape:
      raise ValueError(
        f"tensor {tensor.name} has shape {list(info.shape)}, the config implies "
        f"{list(tensor.mapping.hf_shape)}"
      )
    plan.append((tensor, info))
  known = {t.name for t in expected}
  if cfg.tie_embeddings:
    known.add("lm_head.weight")  # a copy of the embedding some tied checkpoints carry
  unexpected = sorted(n for n in tensors if n not in known and not n.endswith(_IGNORED_SUFFIX))
  if unexpected:
    raise ValueError(
      f"unexpected tensor {unexpected[0]} (jaxlab's LLaMA has no such weight)"
      + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
    )
  return sorted(plan, key=lambda item: (item[1].file, item[1].offset))


def import_checkpoint(hf_dir: str, workdir: str, param_dtype: str = "float32") -> dict[str, Any]:
  """Converts the LLaMA checkpoint in `hf_dir` into a new jaxlab run in `workdir`; returns a
  summary. Everything is checked before anything is written."""
  hf = read_hf_config(hf_dir)
  fields = model_fields(hf)
  cfg = TransformerConfig(**fields, param_dtype=param_dtype)
  plan = import_plan(cfg, safetensors_io.read_checkpoint(hf_dir))
  check_new_directory(workdir, "--workdir")
  started = time.perf_counter()
  with building(workdir) as tmp:
    tokenizer = _copy_tokenizer(hf_dir, hf, tmp)
    config = run_config(fields, param_dtype, tokenizer, workdir)
    with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))
    write_params(os.path.join(tmp, "checkpoints"), cfg, plan)
  return {
    "workdir": workdir,
    "params": sum(math.prod(info.shape) for _, info in plan),
    "tensors": len(plan),
    "tokenizer": config.data.tokenizer.path or None,
    "seconds": round(time.perf_counter() - started, 2),
    "peak_rss_mb": peak_rss_mb(),
  }


def run_config(fields: dict, param_dtype: str, tokenizer: dict, workdir: str):
  """An `lm_pretrain` config whose model section is the checkpoint's."""
  from jaxlab import presets

  config = presets.lm_config(**fields, param_dtype=param_dtype)
  config.train.seq_len = min(config.train.seq_len, fields["max_seq_len"])
  config.data.tokenizer.update(tokenizer)
  if tokenizer.get("path"):
    config.data.tokenizer.path = os.path.join(os.path.abspath(workdir), tokenizer["path"])
  return config


def _copy_tokenizer(hf_dir: str, hf: dict, target: str) -> dict[str, str]:
  """Copies the tokenizer files of `hf_dir` into `target`; the run's `data.tokenizer` settings
  (an `hf` tokenizer, with the config's BOS/EOS named when the tokenizer lists them; without a
  tokenizer.json the path stays empty and tools that need text ask for one)."""
  settings = {"kind": "hf", "path": ""}
  if not os.path.isfile(os.path.join(hf_dir, TOKENIZER_FILES[0])):
    return settings
  for name in TOKENIZER_FILES:
    if os.path.isfile(os.path.join(hf_dir, name)):
      shutil.copyfile(os.path.join(hf_dir, name), os.path.join(target, name))
  settings["path"] = TOKENIZER_FILES[0]
  names = _token_names(os.path.join(hf_dir, TOKENIZER_FILES[0]))
  for role in ("bos", "eos"):
    token_id = hf.get(f"{role}_token_id")
    token_id = token_id[0] if isinstance(token_id, list) and token_id else token_id
    if isinstance(token_id, int) and token_id in names:
      settings[f"{role}_token"] = names[token_id]
  return settings


def _token_names(path: str) -> dict[int, str]:
  """id -> text of a tokenizer.json's added (special) tokens."""
  try:
    with open(path, encoding="utf-8") as f:
      added = json.load(f).get("added_tokens") or []
    return {t["id"]: t["content"] for t in added if isinstance(t, dict) and "id" in t}
  except (ValueError, AttributeError, KeyError, TypeError):
    return {}


def write_params(
  directory: str,
  cfg: TransformerConfig,
  plan: Sequence[tuple[Tensor, safetensors_io.TensorInfo]],
) -> None:
  """Writes an orbax checkpoint (step 0, item `state` = {"params": ...}) under `directory`,
  one HF tensor at a time (see the module docstring)."""
  from jaxlab.progress import Progress

  arrays = _lay_out_checkpoint(directory, abstract_params(cfg))
  progress = Progress(len(plan), label="import", unit="tensor")
  for done, (tensor, info) in enumerate(plan, start=1):
    path, layer = _param_path(cfg, tensor)
    target = arrays[path] if layer is None else arrays[path][layer]
    _write_by_chunks(target, tensor.mapping.to_jaxlab(safetensors_io.load(info)))
    progress.update(done)
  progress.close()


def _write_by_chunks(target: Any, value: Any, in_flight: int = 4) -> None:
  """Writes `value` (a view of a memory-mapped tensor, in any float dtype) into the tensorstore
  array `target` one chunk-aligned region at a time, at most `in_flight` at once: tensorstore
  casts and encodes a few chunks at a time, never the whole tensor."""
  chunk, shape = target.chunk_layout.write_chunk.shape, target.shape
  pending: collections.deque = collections.deque()
  for corner in itertools.product(*(range(0, n, c) for c, n in zip(chunk, shape))):
    index = tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, chunk, shape))
    pending.append(target[index].write(value[index]))
    if len(pending) >= in_flight:
      pending.popleft().result()
  for write in pending:
    write.result()


def _lay_out_checkpoint(directory: str, abstract: Any) -> dict[tuple[str, ...], Any]:
  """Has orbax write the checkpoint's metadata and arrays from zero-stride placeholders (no
  memory; stacked layer arrays chunked per layer), then opens each array for writing."""
  import jax
  import numpy as np
  import orbax.checkpoint as ocp

  placeholders = jax.tree.map(lambda a: np.broadcast_to(np.zeros((), a.dtype), a.shape), abstract)
  save_args = jax.tree_util.tree_map_with_path(
    lambda path, a: ocp.SaveArgs(
      chunk_byte_size=_CHUNK_BYTES, shard_axes=(0,) if path[0].key == "layers" else ()
    ),
    abstract,
  )
  registry = ocp.type_handlers.create_type_handler_registry(
    (np.ndarray, ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False)),
    (jax.Array, ocp.type_handlers.ArrayHandler()),
  )
  handler = ocp.PyTreeCheckpointHandler(use_ocdbt=False, type_handler_registry=registry)
  manager = ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
    item_names=("state",),
    item_handlers={"state": handler},
  )
  manager.save(
    0,
    args=ocp.args.Composite(
      state=ocp.args.PyTreeSave({"params": placeholders}, save_args={"params": save_args})
    ),
  )
  manager.close()
  return saved_arrays(os.path.join(directory, "0", "state"))


def saved_arrays(state_dir: str) -> dict[tuple[str, ...], Any]:
  """Each parameter of an orbax checkpoint item (`checkpoints/STEP/state`, OCDBT or not) opened
  as a tensorstore array, keyed by its path under params: read or written slice by slice,
  without loading the rest. The specs are orbax's own, so any layout orbax writes opens."""
  import jax
  import orbax.checkpoint as ocp
  import tensorstore as ts
  from etils import epath

  state_dir = epath.Path(state_dir)
  metadata = ocp.PyTreeCheckpointHandler().metadata(state_dir)
  use_ocdbt = ocp.type_handlers.is_ocdbt_checkpoint(state_dir)
  context = ocp.type_handlers.get_ts_context(use_ocdbt=use_ocdbt)
  arrays = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(metadata.tree["params"]):
    info = ocp.type_handlers.ParamInfo(
      name=leaf.name, parent_dir=state_dir, use_zarr3=metadata.use_zarr3
    )
    spec = ocp.type_handlers.get_json_tspec_read(info, use_ocdbt=use_ocdbt)
    arrays[tuple(k.key for k in path)] = ts.open(spec, context=context).result()
  return arrays


# ---------------------------------------------------------------------------------- export


def export_checkpoint(
  workdir: str, out: str, dtype: str | None = None, max_shard_bytes: int = 5 * 10**9
) -> dict[str, Any]:
  """Writes the latest parameters of the jaxlab LM run in `workdir` as a Hugging Face LLaMA
  directory `out` (safetensors, sharded above `max_shard_bytes`, with an index); returns a
  summary."""
  import numpy as np

  config = _read_run_config(workdir)
  from jaxlab.experiments.lm_pretrain import LMSettings

  try:
    settings = LMSettings.from_config(config)
  except (ConfigError, KeyError, AttributeError, TypeError) as e:
    raise ValueError(f"{workdir} is not a jaxlab LM run ({e})") from None
  cfg = settings.model
  dtype = dtype or cfg.param_dtype
  if dtype not in DTYPES:
    raise ValueError(f"unknown --dtype {dtype!r}; choose from {', '.join(DTYPES)}")
  step = _latest_step(workdir)
  check_new_directory(out, "--out")
  started = time.perf_counter()
  tensors = model_tensors(cfg)
  np_dtype = np.dtype(DTYPES[dtype])
  specs = [safetensors_io.TensorSpec(t.name, np_dtype, t.mapping.hf_shape) for t in tensors]
  by_name = {t.name: t for t in tensors}
  arrays = saved_arrays(os.path.join(workdir, "checkpoints", str(step), "state"))
  _check_saved_shapes(arrays, abstract_params(cfg), workdir)
  reader = _SlabReader(arrays)

  def produce(spec: safetensors_io.TensorSpec):
    tensor = by_name[spec.name]
    path, layer = _param_path(cfg, tensor)
    return np.ascontiguousarray(tensor.mapping.to_hf(reader.read(path, layer)), np_dtype)

  shards = _split_shards(specs, max_shard_bytes)
  with building(out) as tmp:
    special_ids = _export_tokenizer(settings.data.tokenizer, tmp)
    with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(hf_config(cfg, dtype, special_ids), f, indent=2)
    names = _shard_names(len(shards))
    for name, shard in zip(names, shards):
      safetensors_io.write_file(os.path.join(tmp, name), shard, produce, {"format": "pt"})
    if len(shards) > 1:
      index = {
        "metadata": {"total_size": sum(s.nbytes for s in specs)},
        "weight_map": {s.name: name for name, shard in zip(names, shards) for s in shard},
      }
      with open(os.path.join(tmp, safetensors_io.INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
  return {
    "out": out,
    "step": step,
    "tensors": len(specs),
    "files": len(shards),
    "dtype": dtype,
    "seconds": round(time.perf_counter() - started, 2),
    "peak_rss_mb": peak_rss_mb(),
  }


def _read_run_config(workdir: str):
  import ml_collections

  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    raise ValueError(f"{workdir} is not a jaxlab run: no {CONFIG_FILE}") from None
  except (ValueError, UnicodeDecodeError, RecursionError):
    raise ValueError(f"{path} is not JSON") from None


def _latest_step(workdir: str) -> int:
  from jaxlab.train.checkpoints import Checkpointer

  checkpointer = Checkpointer(workdir)
  try:
    step = checkpointer.latest_step()
  finally:
    checkpointer.close()
  if step is None:
    raise ValueError(f"{workdir} has no checkpoint")
  return step


def _check_saved_shapes(arrays: dict[tuple[str, ...], Any], abstract: Any, workdir: str) -> None:
  """ValueError (one line) unless the checkpoint holds exactly the parameters of the config."""
  import jax

  wanted = {
    tuple(k.key for k in path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract)
  }
  saved = {path: tuple(array.shape) for path, array in arrays.items()}
  for path in sorted(set(wanted) | set(saved)):
    if wanted.get(path) != saved.get(path):
      raise ValueError(
        f"{workdir}: the checkpoint's parameter {'/'.join(path)} is {saved.get(path)}, "
        f"its config.json implies {wanted.get(path)}"
      )


class _SlabReader:
  """Reads a parameter, or one layer of a stacked one, through a cache of one slab of whole
  chunks along the layer axis: every chunk is decoded once, and memory holds one slab (a layer
  for imported runs, whose chunks are per layer; up to the whole parameter for runs orbax chunked
  otherwise)."""

  def __init__(self, arrays: dict[tuple[str, ...], Any]):
    self._arrays = arrays
    self._key: tuple | None = None
    self._slab = None

  def read(self, path: tuple[str, ...], layer: int | None):
    array = self._arrays[path]
    if layer is None:
      return array.read().result()
    rows = array.chunk_layout.read_chunk.shape[0]
    start = layer - layer % rows
    if self._key != (path, start):
      self._slab = None  # free the previous slab before reading the next
      self._slab = array[start : min(start + rows, array.shape[0])].read().result()
      self._key = (path, start)
    return self._slab[layer - start]


def _split_shards(
  specs: Sequence[safetensors_io.TensorSpec], max_bytes: int
) -> list[list[safetensors_io.TensorSpec]]:
  """Consecutive groups of at most `max_bytes` (a larger tensor gets a file of its own)."""
  shards: list[list[safetensors_io.TensorSpec]] = [[]]
  size = 0
  for spec in specs:
    if shards[-1] and size + spec.nbytes > max_bytes:
      shards.append([])
      size = 0
    shards[-1].append(spec)
    size += spec.nbytes
  return shards


def _shard_names(count: int) -> list[str]:
  if count == 1:
    return [safetensors_io.SINGLE_FILE]
  return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _export_tokenizer(tokenizer_cfg, target: str) -> dict[str, int | None]:
  """bos/eos/pad_token_id of the run's tokenizer (none when it cannot be built) and, for an `hf`
  tokenizer, its files copied into `target`."""
  from jaxlab.data.tokenizers import build_tokenizer

  try:
    tokenizer = build_tokenizer(tokenizer_cfg)
  except (ValueError, ImportError):
    return {}
  if tokenizer_cfg.kind == "hf":
    source = os.path.dirname(os.path.abspath(tokenizer_cfg.path))
    shutil.copyfile(tokenizer_cfg.path, os.path.join(target, TOKENIZER_FILES[0]))
    for name in TOKENIZER_FILES[1:]:
      if os.path.isfile(os.path.join(source, name)):
        shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
  return {
    "bos_token_id": tokenizer.bos_id,
    "eos_token_id": tokenizer.eos_id,
    "pad_token_id": tokenizer.pad_id,
  }


# ---------------------------------------------------------------------------------- shared


def check_new_directory(path: str, flag: str) -> None:
  """ValueError (one line) unless `path` is absent or an empty directory in a writable parent."""
  if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
    raise ValueError(f"{flag} {path} already exists and is not empty; choose a new directory")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"{flag} {path}: {parent} is not a writable directory")


@contextlib.contextmanager
def building(target: str) -> Iterator[str]:
  """A temporary directory beside `target`, renamed onto it when the block succeeds and removed
  when it fails or is interrupted."""
  target = os.path.abspath(target)
  tmp = f"{target}.tmp-{secrets.token_hex(4)}"
  os.makedirs(tmp)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.isdir(target):
    os.rmdir(target)  # empty, as check_new_directory required
  os.rename(tmp, target)


def peak_rss_mb() -> float:
  """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@exit_cleanly_on_interrupt()
def main(argv: Sequence[str] | None = None) -> int:
  parser = OneLineParser(prog="python -m jaxlab.interop.hf", description=__doc__.split("\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  imp = commands.add_parser("import", help="Hugging Face LLaMA directory -> jaxlab run")
  imp.add_argument("--hf_dir", required=True, help="config.json + safetensors (+ tokenizer.json)")
  imp.add_argument("--workdir", required=True, help="the new run directory")
  imp.add_argument("--param_dtype", default="float32", choices=sorted(DTYPES))
  exp = commands.add_parser("export", help="jaxlab LM run -> Hugging Face LLaMA directory")
  exp.add_argument("--workdir", required=True, help="a jaxlab LM run directory")
  exp.add_argument("--out", required=True, help="the new Hugging Face directory")
  exp.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: the run's")
  exp.add_argument("--max_shard_mb", type=int, default=1000, help="safetensors file size cap")
  args = parser.parse_args(argv)
  _quiet_libraries()
  _limit_malloc_arenas()
  try:
    if args.command == "import":
      summary = import_checkpoint(args.hf_dir, args.workdir, args.param_dtype)
    else:
      if args.max_shard_mb < 1:
        raise ValueError(f"--max_shard_mb must be at least 1, got {args.max_shard_mb}")
      summary = export_checkpoint(args.workdir, args.out, args.dtype, args.max_shard_mb * 10**6)
  except (ValueError, OSError) as e:
    fail(str(e))
  print(json.dumps(summary))
  return 0


def _limit_malloc_arenas() -> None:
  """Caps glibc's malloc arenas at 2 (M_ARENA_MAX). tensorstore encodes chunks on many threads,
  and with glibc's default of 8 arenas per core the freed chunk buffers stay spread over arenas
  that are never returned: measured, the resident size then creeps up by ~15 MB per layer. A
  no-op where the C library is not glibc."""
  try:
    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
  except (OSError, AttributeError):
    pass


def _quiet_libraries() -> None:
  """orbax logs routine warnings (no OCDBT to merge, ...) through absl; keep stderr for errors."""
  from absl import logging

  logging.set_verbosity(logging.ERROR)


if __name__ == "__main__":
  sys.exit(main())
