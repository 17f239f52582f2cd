"""The four measurements of `python -m jaxlab.bench gpu` (see `jaxlab.bench.gpu`).

Each section returns {"shapes", "rows", "columns", "goals", ...}: rows carry the implementation
name, a status ("ok", "unavailable on <platform>", "skipped (--no_peer)"), seconds and derived
figures; goals are {"goal", "value", "met"} with met None when the value could not be measured.
Contenders of one comparison are timed in alternating rounds (`timing.interleaved_medians`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.bench import peer_torch
from jaxlab.bench.kernels import _passes
from jaxlab.bench.presets import BenchPreset
from jaxlab.bench.sample import NEW_TOKENS, PROMPT_LEN, jaxlab_decode_runner, prompts
from jaxlab.bench.timing import Runner, interleaved_medians, median_seconds
from jaxlab.bench.train import lm_bench_config, random_tokens, train_row
from jaxlab.data.global_batch import to_global_batch
from jaxlab.experiments.lm_pretrain import build_trainer
from jaxlab.kernels.attention import flash_attention
from jaxlab.kernels.attention_reference import xla_attention
from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from jaxlab.objectives.lm import weighted_cross_entropy
from jaxlab.train.flops import train_flops_per_token

_MIB = 2**20
FIT_FRACTION = 0.9  # a train candidate fits when XLA's estimate is below this share of memory


@dataclasses.dataclass(frozen=True)
class Suite:
  """The shapes of one run of the suite (a `--preset`)."""

  model: BenchPreset  # train-step and decode model; its batch is replaced per candidate
  dtype: str  # compute dtype of the train step, attention and the loss
  # (remat_policy, batch, loss_impl, attention_impl) of the train step, fastest first
  train_candidates: tuple[tuple[str, int, str, str], ...]
  attention: tuple[int, int, int, int, int]  # batch, seq, heads, kv_heads, head_dim
  xla_query_block: int  # the xla attention path's query block, as the model config would set it
  ce_tokens: int
  ce_dim: int
  ce_vocabs: tuple[int, ...]  # the goal applies to the first
  decode_batches: tuple[int, ...]  # the goal applies to the last
  repeats: int
  needs_gpu: bool
  eta_s: tuple[float, float, float, float]  # rough seconds per section on the intended machine
  xla_flags: str = ""  # added to XLA_FLAGS before the backend starts


def _goal(goal: str, value: float | None, met: Callable[[float], bool]) -> dict:
  return {"goal": goal, "value": value, "met": None if value is None else bool(met(value))}


def _compile(fn: Callable, args: tuple) -> tuple[Runner, Callable, int | None]:
  """(blocking runner, the compiled function, XLA's temp bytes or None)."""
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = None if memory is None else int(memory.temp_size_in_bytes)
  return (lambda: jax.block_until_ready(compiled(*args))), compiled, temp


def _memory_limit() -> int | None:
  stats = jax.devices()[0].memory_stats()
  return stats.get("bytes_limit") if stats else None


def one_line(e: BaseException) -> str:
  """`Type: first line of the message`."""
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _train_candidate(suite: Suite, candidate: tuple, limit: int | None, entry: dict):
  """(trainer, preset, runner after one step) for a candidate, or None if it does not fit."""
  remat, batch, loss_impl, attention_impl = candidate
  preset = dataclasses.replace(suite.model, batch=batch)
  config = lm_bench_config(preset, dtype=suite.dtype)
  config.model.update(
    scan_layers=True,
    remat_policy=remat,
    attention_impl=attention_impl,
    attention_query_block=suite.xla_query_block,
    loss_impl=loss_impl,
  )
  trainer = build_trainer(config, "", jax.devices()[:1], with_data=False)
  step = trainer.compile()
  entry.update(compiled_bytes=trainer.bytes_per_device)
  entry["fits"] = limit is None or trainer.bytes_per_device <= FIT_FRACTION * limit
  if not entry["fits"]:
    return None
  tokens = random_tokens(preset)
  positions = np.broadcast_to(np.arange(preset.seq_len, dtype=np.int32), tokens[:, 1:].shape)
  ones = np.ones(positions.shape, np.int32)
  data = to_global_batch(
    {
      "inputs": tokens[:, :-1],
      "targets": tokens[:, 1:],
      "segment_ids": ones,
      "positions": np.ascontiguousarray(positions),
      "loss_weights": ones.astype(np.float32),
    },
    trainer.batch_sharding,
  )
  holder = {"state": trainer.create_state()}

  def once():
    holder["state"], holder["metrics"] = step(holder["state"], data)
    jax.block_until_ready(holder["metrics"]["loss"])

  once()  # an out-of-memory error surfaces here, while the next candidate can still run
  return trainer, preset, once, holder


def train(suite: Suite) -> dict:
  """One compiled train step (AdamW, fp32 master weights, `suite.dtype` compute) of the first
  candidate that compiles, fits the device by XLA's estimate and runs a step."""
  limit, tried = _memory_limit(), []
  for candidate in suite.train_candidates:
    entry = dict(zip(("remat_policy", "batch", "loss_impl", "attention_impl"), candidate))
    tried.append(entry)
    try:
      found = _train_candidate(suite, candidate, limit, entry)
    except Exception as e:  # noqa: BLE001  (a kernel that fails to lower, out of memory)
      entry["error"] = one_line(e)
      continue
    if found:
      break
  else:
    raise RuntimeError(f"no train candidate ran: {tried}")
  trainer, preset, once, holder = found
  seconds = median_seconds(once, suite.repeats)
  flops_per_token = train_flops_per_token(trainer.program.objective.model.cfg, preset.seq_len)
  row = {"status": "ok", **train_row(preset, seconds, flops_per_token)}
  row.setdefault("mfu", None)
  row.update({k: v for k, v in tried[-1].items() if k not in ("compiled_bytes", "fits")})
  row.update(compiled_gib=trainer.bytes_per_device / 2**30, loss=float(holder["metrics"]["loss"]))
  shapes = dataclasses.asdict(preset)
  shapes.update(params=trainer.num_params(), dtype=suite.dtype, param_dtype="float32")
  return {
    "shapes": shapes,
    "rows": [row],
    "columns": ["impl", "status", "remat_policy", "batch", "loss_impl", "attention_impl"]
    + ["step_s", "tokens_per_s", "tflops_per_device", "mfu", "compiled_gib", "loss"],
    "candidates_tried": tried,
    "device_bytes_limit": limit,
    "flops_per_token": flops_per_token,
    "goals": [_goal("MFU >= 50%", row["mfu"], lambda v: v >= 0.5)],
  }


def attention(suite: Suite) -> dict:
  """Causal GQA attention forward+backward: jaxlab's GPU kernel, cuDNN, the XLA path."""
  batch, length, heads, kv_heads, dim = suite.attention
  dtype = jnp.dtype(suite.dtype)
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (batch, length, heads, dim), dtype)
  k = jax.random.normal(keys[1], (batch, length, kv_heads, dim), dtype)
  v = jax.random.normal(keys[2], (batch, length, kv_heads, dim), dtype)
  pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
  ids = dict(q_index=pos, kv_index=pos, q_segment_ids=jnp.ones_like(pos))
  ids["kv_segment_ids"] = ids["q_segment_ids"]
  platform = jax.default_backend()
  gpu = platform == "gpu"
  impls = {
    "jaxlab pallas": lambda q, k, v: flash_attention(q, k, v, **ids, target="gpu"),
    "cudnn": lambda q, k, v: jax.nn.dot_product_attention(
      q, k, v, is_causal=True, implementation="cudnn"
    ),
    "xla": lambda q, k, v: xla_attention(q, k, v, **ids, query_block=suite.xla_query_block),
  }
  ran = {
    "jaxlab pallas": "Triton kernel (attention_gpu)",
    "cudnn": "jax.nn.dot_product_attention(implementation='cudnn')",
    "xla": f"jaxlab xla_attention, query_block={suite.xla_query_block}",
  }
  runners, rows = {}, {}
  for name in impls:
    rows[name] = {"impl": name, "ran": ran[name]}
    if name != "xla" and not gpu:
      rows[name]["status"] = f"unavailable on {platform}"
      continue
    try:
      runners[name], _, temp = _compile(_passes(impls[name], 3)["fwd+bwd"], (q, k, v))
    except Exception as e:  # noqa: BLE001  (e.g. a cuDNN too old: recorded, the others still run)
      if name == "xla":
        raise
      rows[name]["status"] = f"error: {one_line(e)}"
      continue
    rows[name].update(status="ok", temp_mib=None if temp is None else temp / _MIB)
  if len(runners) > 1:  # the forward outputs of the others against the XLA path
    reference = jax.jit(impls["xla"])(q, k, v).astype(jnp.float32)
    for name in runners.keys() - {"xla"}:
      out = jax.jit(impls[name])(q, k, v).astype(jnp.float32)
      rows[name]["max_abs_diff_vs_xla"] = float(jnp.max(jnp.abs(out - reference)))
  seconds = interleaved_medians(runners, suite.repeats)
  flops = 6.0 * batch * heads * length * length * dim  # causal fwd+bwd, as in train/flops.py
  for name, s in seconds.items():
    rows[name].update(ms=s * 1e3, tflops=flops / s / 1e12)
  ours = seconds.get("jaxlab pallas")
  ratios = {
    f"jaxlab_vs_{other}": seconds[other] / ours if ours and other in seconds else None
    for other in ("cudnn", "xla")
  }
  return {
    "shapes": dict(batch=batch, seq=length, heads=heads, kv_heads=kv_heads, head_dim=dim)
    | dict(dtype=dtype.name, causal=True, passes="fwd+bwd"),
    "rows": [rows[name] for name in impls],
    "columns": ["impl", "status", "ms", "tflops", "temp_mib", "max_abs_diff_vs_xla", "ran"],
    "ratios": ratios,
    "goals": [
      _goal("jaxlab >= 0.9x cuDNN speed", ratios["jaxlab_vs_cudnn"], lambda r: r >= 0.9),
      _goal("jaxlab >= 2x XLA speed", ratios["jaxlab_vs_xla"], lambda r: r >= 2.0),
    ],
  }


_CE_LOSSES = {  # (hidden [N, D], head [D, V], targets [N], weights [N]) -> weighted loss sum
  "naive": lambda h, w, t, wt: weighted_cross_entropy(jnp.dot(h, w), t, wt)[0],
  "fused": lambda h, w, t, wt: fused_linear_cross_entropy(h, w, t, wt)[0],
}


def linear_ce(suite: Suite) -> dict:
  """Output projection + cross-entropy forward+backward: fused (loss_impl="fused") against the
  naive path (full logits, `objectives.lm.weighted_cross_entropy`, loss_impl="xla")."""
  dtype = jnp.dtype(suite.dtype)
  tokens, dim = suite.ce_tokens, suite.ce_dim
  rows, goals = [], []
  for i, vocab in enumerate(suite.ce_vocabs):
    keys = jax.random.split(jax.random.key(vocab), 3)
    hidden = jax.random.normal(keys[0], (tokens, dim), dtype)
    head = (jax.random.normal(keys[1], (dim, vocab)) * dim**-0.5).astype(dtype)
    targets = jax.random.randint(keys[2], (tokens,), 0, vocab)
    weights = jnp.ones((tokens,), jnp.float32)
    args = (hidden, head, targets, weights)
    runners, by_impl = {}, {}
    for name, loss in _CE_LOSSES.items():
      runners[name], compiled, temp = _compile(jax.value_and_grad(loss, (0, 1)), args)
      value = float(compiled(*args)[0])
      by_impl[name] = {"vocab": vocab, "impl": name, "status": "ok", "temp_bytes": temp}
      by_impl[name].update(temp_mib=None if temp is None else temp / _MIB, loss=value)
    seconds = interleaved_medians(runners, suite.repeats)
    naive, fused = by_impl["naive"], by_impl["fused"]
    for name, s in seconds.items():
      by_impl[name]["ms"] = s * 1e3
    known = fused["temp_bytes"] is not None and naive["temp_bytes"]  # None, or 0 on a backend
    fused["temp_vs_naive"] = fused["temp_bytes"] / naive["temp_bytes"] if known else None
    fused["speed_vs_naive"] = seconds["naive"] / seconds["fused"]
    fused["loss_rel_diff"] = abs(fused["loss"] - naive["loss"]) / abs(naive["loss"])
    rows += [naive, fused]
    if i == 0:
      goals = [
        _goal(
          f"fused temp <= 1/8 naive at V={vocab}", fused["temp_vs_naive"], lambda r: r <= 1 / 8
        ),
        _goal(f"fused speed >= 1x naive at V={vocab}", fused["speed_vs_naive"], lambda r: r >= 1.0),
      ]
  ran = "Mosaic kernel" if jax.default_backend() == "tpu" else "vocabulary-chunked XLA loop"
  return {
    "shapes": dict(tokens=tokens, dim=dim, vocabs=list(suite.ce_vocabs), dtype=dtype.name)
    | dict(passes="fwd+bwd", fused_ran=ran),
    "rows": rows,
    "columns": ["vocab", "impl", "status", "ms", "temp_mib", "temp_vs_naive", "speed_vs_naive"]
    + ["loss_rel_diff"],
    "goals": goals,
  }


def decode(suite: Suite, peer: bool) -> dict:
  """Greedy decoding of NEW_TOKENS per row (float32 weights on both sides) by jaxlab's sampler
  and, with `peer`, transformers' generate on the same device."""
  model = device = None
  if peer:
    import torch  # pylint: disable=g-import-not-at-top

    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    torch.set_float32_matmul_precision("high")  # TF32, as XLA's default precision on GPU
    with torch.device(device):  # parameters are created on the device, not copied there
      model = peer_torch.build_model(suite.model).eval()
  rows, ratios = [], {}
  for batch in suite.decode_batches:
    preset = dataclasses.replace(suite.model, batch=batch)
    prompt_tokens = prompts(preset)
    runners = {"jaxlab": jaxlab_decode_runner(preset, prompt_tokens)}
    if peer:
      runners["transformers"] = peer_torch.generate_runner(
        preset, prompt_tokens, NEW_TOKENS, model=model, device=device
      )
    seconds = interleaved_medians(runners, suite.repeats, warmup=1)
    for impl in ("jaxlab", "transformers"):
      row = {"batch": batch, "impl": impl, "status": "skipped (--no_peer)"}
      if impl in seconds:
        row.update(status="ok", seconds=seconds[impl])
        row["tokens_per_s"] = batch * NEW_TOKENS / seconds[impl]
      rows.append(row)
    ratios[batch] = seconds["transformers"] / seconds["jaxlab"] if peer else None
    rows[-2]["vs_transformers"] = ratios[batch]
  last = suite.decode_batches[-1]
  shapes = {
    k: v for k, v in dataclasses.asdict(suite.model).items() if k not in ("batch", "seq_len")
  }
  shapes.update(batches=list(suite.decode_batches), prompt_len=PROMPT_LEN, new_tokens=NEW_TOKENS)
  return {
    "shapes": shapes | dict(dtype="float32", greedy=True),
    "rows": rows,
    "columns": ["batch", "impl", "status", "seconds", "tokens_per_s", "vs_transformers"],
    "peer": "transformers generate" if peer else "skipped (--no_peer)",
    "weights": "random init on each side, same shapes and dtype (speed does not depend on values)",
    "goals": [
      _goal(f"decode at batch {last} >= 1x transformers", ratios[last], lambda r: r >= 1.0)
    ],
  }
