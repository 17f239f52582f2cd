"""python -m jaxlab.bench {train,sample,kernels} [--preset tiny|small] [--out FILE.json]

`python -m jaxlab.bench gpu --out DIR [--preset gpu|cpu_small] [--no_peer]` runs the single-GPU
suite of `jaxlab.bench.gpu` (train step, attention, fused loss, decode) into DIR/gpu.{json,md}.

Each subcommand prints a markdown table and, with --out, writes its figures as JSON. `train` and
`sample` run jaxlab and the transformers peer in the same invocation on the same machine and
report ratio = jaxlab throughput / peer throughput, timed in alternating rounds
(`jaxlab.bench.timing.interleaved_medians`) so that load changes hit both sides alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import jax

import jaxlab  # noqa: F401  (selects the JAX platform before jax loads)
from jaxlab.bench import gpu, peer_torch
from jaxlab.bench.presets import get_preset
from jaxlab.bench.timing import interleaved_medians, markdown_table
from jaxlab.cli import exit_cleanly_on_interrupt
from jaxlab.fileio import write_text_atomic


def _device() -> str:
  device = jax.devices()[0]
  return f"{device.platform}:{device.device_kind} ({platform.processor() or platform.machine()})"


def _train(args) -> dict:
  from jaxlab.bench.train import jaxlab_train_runner, random_tokens, train_row

  preset = get_preset(args.preset)
  tokens = random_tokens(preset)
  ours, flops_per_token = jaxlab_train_runner(preset, tokens)
  seconds = interleaved_medians(
    {"jaxlab": ours, "transformers": peer_torch.train_runner(preset, tokens)}, args.repeats
  )
  rows = [
    train_row(preset, seconds["jaxlab"], flops_per_token),
    {
      "impl": "transformers",
      "step_s": seconds["transformers"],
      "tokens_per_s": preset.batch * preset.seq_len / seconds["transformers"],
    },
  ]
  return {
    "rows": rows,
    "ratio": seconds["transformers"] / seconds["jaxlab"],
    "columns": ["impl", "step_s", "tokens_per_s", "tflops_per_device"],
  }


def _sample(args) -> dict:
  from jaxlab.bench.sample import NEW_TOKENS, jaxlab_decode_runner, prompts

  preset = get_preset(args.preset)
  prompt_tokens = prompts(preset)
  seconds = interleaved_medians(
    {
      "jaxlab": jaxlab_decode_runner(preset, prompt_tokens),
      "transformers": peer_torch.generate_runner(preset, prompt_tokens, NEW_TOKENS),
    },
    args.repeats,
    warmup=1,
  )
  rows = [
    {"impl": impl, "seconds": s, "tokens_per_s": preset.batch * NEW_TOKENS / s}
    for impl, s in seconds.items()
  ]
  return {
    "rows": rows,
    "ratio": seconds["transformers"] / seconds["jaxlab"],
    "columns": ["impl", "seconds", "tokens_per_s"],
  }


def _kernels(args) -> dict:
  if args.aot_tpu:
    from jaxlab.kernels.aot import aot_tpu_check

    results = aot_tpu_check(args.aot_tpu)
    for name, ok, detail in results:
      print(f"{'OK  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    return {
      "rows": [{"kernel": n, "ok": ok, "detail": d} for n, ok, d in results],
      "failed": not all(ok for _, ok, _ in results),
      "columns": [],
    }
  from jaxlab.bench.kernels import run_kernel_benchmarks

  rows = run_kernel_benchmarks(None)
  return {"rows": rows, "columns": list(rows[0]) if rows else []}


@exit_cleanly_on_interrupt()
def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m jaxlab.bench", description=__doc__.splitlines()[0]
  )
  sub = parser.add_subparsers(dest="command", required=True)
  for name in ("train", "sample"):
    p = sub.add_parser(name)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None)
  p = sub.add_parser("kernels")
  p.add_argument("--aot_tpu", default=None, help="compile every TPU kernel for this topology")
  p.add_argument("--out", default=None)
  gpu.add_arguments(sub.add_parser("gpu", help="the single-GPU suite (see jaxlab.bench.gpu)"))
  args = parser.parse_args(argv)
  if args.command == "gpu":
    return gpu.run(args)
  try:
    result = {"train": _train, "sample": _sample, "kernels": _kernels}[args.command](args)
  except (ValueError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  result["device"] = _device()
  if result["columns"]:
    print(markdown_table(result["rows"], result["columns"]))
  if "ratio" in result:
    print(
      f"\nratio (jaxlab / transformers throughput): {result['ratio']:.2f} on {result['device']}"
    )
  if args.out:
    figures = {k: v for k, v in result.items() if k != "columns"}
    write_text_atomic(args.out, json.dumps(figures, indent=2))
  return 1 if result.get("failed") else 0


if __name__ == "__main__":
  sys.exit(main())
