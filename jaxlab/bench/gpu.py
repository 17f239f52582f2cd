"""`python -m jaxlab.bench gpu --out DIR`: the single-GPU benchmark suite.

Four sections, each timed on the default device and checked against its goal:
  train      a LLaMA train step (1.6B, bf16, AdamW with fp32 master weights; the first remat
             policy / batch / loss_impl candidate whose compiled program fits): tokens/s,
             TFLOP/s and MFU under `jaxlab.train.flops`. Goal: MFU >= 50%.
  attention  causal GQA attention forward+backward at sequence 4096: jaxlab's Triton kernel,
             cuDNN and the XLA path. Goals: >= 0.9x cuDNN, >= 2x XLA.
  linear_ce  fused linear + cross-entropy vs full logits at vocabulary 32k and 128k: XLA's temp
             bytes (works on CPU too) and time. Goal at 32k: <= 1/8 of the memory, no slower.
  decode     the sampler's greedy decode at batch 1, 16, 64 vs transformers' generate on the same
             device. Goal: >= 1x at batch 64.
What a platform lacks (cuDNN, the GPU kernel on CPU) is a row saying "unavailable on <platform>";
MFU is null where the device's peak is unknown. DIR/gpu.json and DIR/gpu.md are rewritten
atomically after every section, so an interrupted run keeps the finished ones. `--preset cpu_small`
runs the same code at tiny shapes on CPU in well under a minute (compiling without LLVM
optimization); `--no_peer` leaves out the transformers rows.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import traceback

import jax

from jaxlab.bench import gpu_sections
from jaxlab.bench.gpu_sections import Suite
from jaxlab.bench.presets import BenchPreset
from jaxlab.bench.timing import markdown_table
from jaxlab.fileio import write_text_atomic
from jaxlab.presets import SMI_SHAPES, SMI_VOCAB_SIZE
from jaxlab.progress import Progress
from jaxlab.train.flops import peak_flops_per_device

SUITES = {
  "gpu": Suite(
    model=BenchPreset(vocab_size=SMI_VOCAB_SIZE, **SMI_SHAPES["1p6b"], seq_len=4096, batch=8),
    dtype="bfloat16",
    # Saved matmul outputs and full logits should fit an H200's default JAX share (75%) at
    # batch 8; an H100 falls back to full remat and the fused loss, and if the Triton kernel
    # fails to lower, to XLA attention.
    train_candidates=(
      ("dots_no_batch", 8, "xla", "pallas"),
      ("full", 8, "fused", "pallas"),
      ("full", 8, "fused", "xla"),
    ),
    attention=(4, 4096, 32, 8, 128),
    xla_query_block=512,
    ce_tokens=8192,
    ce_dim=2048,
    ce_vocabs=(32768, 131072),
    decode_batches=(1, 16, 64),
    repeats=4,
    needs_gpu=True,
    eta_s=(150, 40, 40, 200),
  ),
  "cpu_small": Suite(
    model=BenchPreset(
      vocab_size=256, d_model=64, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=128, seq_len=64, batch=2
    ),
    dtype="bfloat16",
    train_candidates=(("dots_no_batch", 2, "xla", "xla"),),
    attention=(1, 128, 4, 2, 16),
    xla_query_block=32,
    ce_tokens=256,
    ce_dim=64,
    ce_vocabs=(2048, 8192),
    decode_batches=(1, 8),
    repeats=2,
    needs_gpu=False,
    eta_s=(5, 2, 3, 5),
    # Compiling is nearly all of this preset's time, and its figures check the plumbing, not
    # speed: compile without LLVM optimization, as tests/kernels/helpers.py does.
    xla_flags="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
  ),
}
SECTIONS = {
  "train": "LLaMA train step",
  "attention": "causal GQA attention, forward+backward",
  "linear_ce": "fused linear + cross-entropy vs full logits, forward+backward",
  "decode": "greedy decode throughput vs transformers generate",
}
_PEER_MODULES = ("torch", "transformers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--out", required=True, help="directory for gpu.json and gpu.md")
  parser.add_argument("--preset", default="gpu", choices=sorted(SUITES))
  parser.add_argument(
    "--no_peer", action="store_true", help="leave out the transformers rows (no torch needed)"
  )


def _module_available(name: str) -> bool:
  return importlib.util.find_spec(name) is not None


def _peer_pins() -> list[str]:
  """The bench extra's pinned requirements, as installed jaxlab declares them."""
  try:
    requires = importlib.metadata.requires("jaxlab") or []
  except importlib.metadata.PackageNotFoundError:
    requires = []
  pins = [r.split(";")[0].strip() for r in requires if 'extra == "bench"' in r]
  return pins or list(_PEER_MODULES)


def missing_requirements(suite: Suite, peer: bool) -> tuple[list[str], list[str]]:
  """(what is missing for this run, how to get it); both empty when all is there."""
  missing, hints = [], []
  if suite.needs_gpu:
    try:
      backend = jax.default_backend()
    except RuntimeError:  # JAX_PLATFORMS names a platform that failed to initialize
      backend = "none"
    if backend != "gpu":
      missing.append(f"a CUDA GPU visible to jax (it sees {backend})")
      hints.append(f"pip install 'jax[cuda12]=={jax.__version__}', or --preset cpu_small")
  if peer:
    absent = [name for name in _PEER_MODULES if not _module_available(name)]
    missing += absent
    if not absent and suite.needs_gpu and "+cpu" in importlib.metadata.version("torch"):
      missing.append(f"a CUDA build of torch (this is {importlib.metadata.version('torch')})")
      absent = ["torch"]
    if absent:
      hints.append(f"pip install {' '.join(_peer_pins())}, or --no_peer")
  return missing, hints


def out_problem(out: str) -> str | None:
  """Why `out` cannot be the output directory (None if it can), without creating anything."""
  path = os.path.abspath(out)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "" if existing == path else f": {existing}"
    return f"--out {out}{where} is a file, not a directory"
  if not os.access(existing, os.W_OK | os.X_OK):
    return f"--out {out}: {existing} is not writable"
  return None


def _none_as_na(row: dict) -> dict:
  return {k: "n/a" if v is None else v for k, v in row.items()}


def markdown(report: dict, columns: dict[str, list[str]]) -> str:
  """gpu.md: the goals, then one table per section."""
  goals = []
  for name, section in report["sections"].items():
    for goal in section.get("goals", []):
      met = {True: "met", False: "not met", None: "n/a"}[goal["met"]]
      goals.append(dict(goal, section=name, met=met))
  failed = [name for name, s in report["sections"].items() if s["status"] != "ok"]
  done = "complete" if report["complete"] else "partial: sections still missing"
  done += f", failed: {', '.join(failed)}" if failed else ""
  lines = [
    f"# jaxlab GPU benchmark, preset {report['preset']} ({done})",
    "",
    f"device {report['device']}, jax {report['jax']}, transformers peer: {report['peer']}"
    + (f", XLA_FLAGS={report['xla_flags']}" if report["xla_flags"] else ""),
    "",
    "## Goals",
    "",
    markdown_table([_none_as_na(g) for g in goals], ["section", "goal", "value", "met"]),
  ]
  for name, section in report["sections"].items():
    lines += ["", f"## {name}: {SECTIONS[name]}", ""]
    if section["status"] != "ok":
      lines.append(f"error: {section['error']}")
      continue
    shapes = ", ".join(f"{k}={v}" for k, v in section["shapes"].items())
    lines += [
      f"shapes: {shapes}",
      "",
      markdown_table(list(map(_none_as_na, section["rows"])), columns[name]),
    ]
  return "\n".join(lines) + "\n"


def _run_section(name: str, suite: Suite, peer: bool) -> tuple[dict, list[str]]:
  start = time.monotonic()
  try:
    if name == "decode":
      result = gpu_sections.decode(suite, peer)
    else:
      result = getattr(gpu_sections, name)(suite)
  except Exception as e:  # noqa: BLE001  (recorded; the other sections still run)
    message = gpu_sections.one_line(e)
    print(f"bench gpu: {name} failed: {message}", file=sys.stderr, flush=True)
    section = {"status": "error", "error": message, "traceback": traceback.format_exc()}
    return section | {"seconds": time.monotonic() - start}, []
  columns = result.pop("columns")
  return {"status": "ok", "seconds": time.monotonic() - start, **result}, columns


def run(args: argparse.Namespace) -> int:
  """The `gpu` subcommand; 2 (one line on stderr, nothing written) when it cannot run."""
  suite, peer = SUITES[args.preset], not args.no_peer
  if suite.xla_flags:  # read when the backend starts: below, unless a caller already started it
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {suite.xla_flags}".strip()
  missing, hints = missing_requirements(suite, peer)
  if missing:
    print(
      f"error: missing for the gpu benchmark: {', '.join(missing)} ({'; '.join(hints)})",
      file=sys.stderr,
    )
    return 2
  problem = out_problem(args.out)
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  device = jax.devices()[0]
  versions = [f"{m} {importlib.metadata.version(m)}" for m in _PEER_MODULES] if peer else []
  report = {
    "preset": args.preset,
    "device": f"{device.platform}:{device.device_kind}",
    "device_count": jax.device_count(),
    "peak_flops_per_device": peak_flops_per_device(device.device_kind),
    "jax": jax.__version__,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "peer": ", ".join(versions) or "skipped (--no_peer)",
    "started": datetime.datetime.now().isoformat(timespec="seconds"),
    "complete": False,
    "sections": {},
  }
  json_path, md_path = os.path.join(args.out, "gpu.json"), os.path.join(args.out, "gpu.md")
  columns: dict[str, list[str]] = {}

  def write():
    write_text_atomic(json_path, json.dumps(report, indent=2))
    write_text_atomic(md_path, markdown(report, columns))

  os.makedirs(args.out, exist_ok=True)
  write()
  progress = Progress(len(SECTIONS), label="bench gpu", unit="section", every_s=0)
  for i, name in enumerate(SECTIONS):
    print(
      f"bench gpu: [{i + 1}/{len(SECTIONS)}] {name}: {SECTIONS[name]} (preset estimate "
      f"{suite.eta_s[i]:.0f} s, {sum(suite.eta_s[i:]):.0f} s left)",
      file=sys.stderr,
      flush=True,
    )
    report["sections"][name], columns[name] = _run_section(name, suite, peer)
    gc.collect()  # the section's device arrays (a 1.6B model's train state) go before the next
    write()
    progress.update(i + 1)
  progress.close()
  report["complete"] = True
  report["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
  write()
  print(markdown(report, columns), end="")
  failed = [n for n, s in report["sections"].items() if s["status"] != "ok"]
  if failed:
    print(f"error: sections failed: {', '.join(failed)} (see {json_path})", file=sys.stderr)
  return 1 if failed else 0
