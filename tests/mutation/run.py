"""Runs the curated JAX-level mutants (tests/mutation/curated.py) on a copy of the repository.

  python -m tests.mutation.run [NAME ...]

The repository (without .venv, .git, mutants/ and caches) is copied to a temporary directory;
each mutant's edits are applied to the copy, its test file runs there with this interpreter
(`cwd` the copy, so `jaxlab` is the copy's), and the file is restored before the next mutant.
Each test file first runs unmutated (skip with --no-baseline) so that a failing or missing file
cannot pass for a kill. The checkout itself is never written. Exits 1 unless every mutant is
killed: one survives, an old text is not found exactly once, a test file is missing or fails
unmutated, or a run ends other than passed (0) or failed (1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.mutation.curated import MUTANTS, Mutant

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IGNORED = shutil.ignore_patterns(
  ".venv",
  ".git",
  "mutants",
  "workdirs",
  "build",
  "__pycache__",
  ".pytest_cache",
  ".ruff_cache",
  "*.egg-info",
)
TIMEOUT_S = 1200


def apply_edits(text: str, mutant: Mutant) -> str:
  """`text` with the mutant's edits; ValueError if an old text is not there exactly once."""
  for old, new in mutant.edits:
    count = text.count(old)
    if count != 1:
      raise ValueError(f"{mutant.path}: old text found {count} times, expected once: {old!r}")
    text = text.replace(old, new)
  return text


def run_tests(copy: str, test: str) -> tuple[int | None, float, str]:
  """(pytest's exit status or None on timeout, seconds, output tail) of `test` in `copy`."""
  # -m "": the file's slow tests too (addopts leaves them out).
  command = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-m", "", "-p", "no:cacheprovider"]
  command.append(test)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONDONTWRITEBYTECODE="1")
  start = time.monotonic()
  try:
    result = subprocess.run(
      command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
  except subprocess.TimeoutExpired:
    return None, time.monotonic() - start, f"no result in {TIMEOUT_S} s"
  return result.returncode, time.monotonic() - start, (result.stdout + result.stderr)[-3000:]


def failed_tests(output: str) -> str:
  """The test ids pytest's summary names as failed (what killed a mutant)."""
  lines = output.splitlines()
  return ", ".join(line.split()[1] for line in lines if line.startswith(("FAILED ", "ERROR ")))


def run_one(copy: str, mutant: Mutant) -> tuple[str, float, str]:
  """(status, seconds, output tail) of one mutant in the repository copy `copy`."""
  path = os.path.join(copy, mutant.path)
  with open(path, encoding="utf-8") as f:
    original = f.read()
  try:
    mutated = apply_edits(original, mutant)
  except ValueError as e:
    return "old text not found", 0.0, str(e)
  try:
    with open(path, "w", encoding="utf-8") as f:
      f.write(mutated)
    code, seconds, output = run_tests(copy, mutant.test)
  finally:
    with open(path, "w", encoding="utf-8") as f:
      f.write(original)
  status = {0: "survived", 1: "killed", None: "timeout"}.get(code, f"error (pytest {code})")
  return status, seconds, output


def baseline(copy: str, tests: list[str]) -> dict[str, str]:
  """Why each of `tests` cannot judge a mutant ("" when it passes unmutated)."""
  problems = {}
  for test in dict.fromkeys(tests):
    if not os.path.isfile(os.path.join(copy, test)):
      problems[test] = "test missing"
      print(f"{test} does not exist", flush=True)
      continue
    code, seconds, output = run_tests(copy, test)
    problems[test] = "" if code == 0 else f"baseline fails (pytest {code})"
    print(f"baseline {test}: {problems[test] or 'passes'} ({seconds:.0f} s)", flush=True)
    if code != 0:
      print(output, flush=True)
  return problems


def _check_copy_imports_itself(copy: str) -> None:
  code = "import jaxlab, os; print(os.path.dirname(os.path.dirname(jaxlab.__file__)))"
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=copy, capture_output=True, text=True, check=True
  ).stdout.strip()
  if os.path.realpath(out) != os.path.realpath(copy):
    raise SystemExit(f"the copy imports jaxlab from {out}, not from {copy}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
  parser.add_argument(
    "--no-baseline",
    action="store_true",
    help="skip running each test file unmutated first (a failing file would 'kill' anything)",
  )
  args = parser.parse_args(argv)
  names = {m.name for m in MUTANTS}
  unknown = sorted(set(args.names) - names)
  if unknown:
    parser.error(f"unknown mutants {', '.join(unknown)}; known: {', '.join(sorted(names))}")
  mutants = [m for m in MUTANTS if not args.names or m.name in args.names]
  rows = []
  with tempfile.TemporaryDirectory(prefix="jaxlab_mutate_") as tmp:
    copy = os.path.join(tmp, "repo")
    shutil.copytree(REPO, copy, ignore=IGNORED, symlinks=True)
    _check_copy_imports_itself(copy)
    tests = [m.test for m in mutants]
    problems = {t: "" for t in tests} if args.no_baseline else baseline(copy, tests)
    for mutant in mutants:
      print(f"curated mutant {mutant.name}: {mutant.what} ... ", end="", flush=True)
      if problems[mutant.test]:
        status, seconds, output = problems[mutant.test], 0.0, ""
      else:
        status, seconds, output = run_one(copy, mutant)
      print(f"{status} ({seconds:.0f} s, {mutant.test})", flush=True)
      if status != "killed":
        print(output, flush=True)
      rows.append((mutant, status, seconds, failed_tests(output) if status == "killed" else ""))
  print("\ncurated mutants")
  print(f"{'mutant':<38} {'status':<20} {'seconds':>7}  killed by (or the test file)")
  for mutant, status, seconds, by in rows:
    print(f"{mutant.name:<38} {status:<20} {seconds:7.0f}  {by or mutant.test}")
  killed = sum(status == "killed" for _, status, _, _ in rows)
  print(f"{killed} of {len(rows)} killed")
  return 0 if killed == len(rows) else 1


if __name__ == "__main__":
  sys.exit(main())
