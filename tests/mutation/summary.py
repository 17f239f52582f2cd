"""Per-module results of the last `mutmut run` (read from mutants/), for `make mutate`.

  python -m tests.mutation.summary [--all]

A survivor (or a mutant no selected test reaches) is "equivalent" when tests/mutation/equivalent.py
lists its change (module, function, removed and added lines), so the list survives renumbering.
Prints the table and every undocumented survivor's diff (--all: also the equivalent ones); exits
1 if any undocumented survivor, unreached or suspicious mutant is left, 0 otherwise. Mutants the
run skipped (a `make mutate MUTANTS=...` subset) are counted as "not run" and do not fail it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import json
import os
import sys
import tomllib

from tests.mutation.equivalent import EQUIVALENT, Equivalent
from tests.mutation.plugin import MODULE_TESTS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASS_SEPARATOR = "ǁ"  # mutmut's mangling: xǁClassǁmethod

KILLED = {1: "killed", 3: "killed"}
TIMEOUT = {-24, 24, 36, 152, 255}  # SIGXCPU and mutmut's timeout codes: the tests did not pass
UNREACHED = {5, 33}  # no selected test calls the function


@dataclasses.dataclass
class Mutant:
  key: str  # mutmut's name, e.g. jaxlab.smi.metric.x_quantize__mutmut_3
  function: str  # quantize, or Class.method
  removed: tuple[str, ...]
  added: tuple[str, ...]
  status: str

  def diff(self) -> str:
    lines = [f"  - {line}" for line in self.removed] + [f"  + {line}" for line in self.added]
    return "\n".join(lines)


def modules() -> list[str]:
  """pyproject.toml's only_mutate, checked against tests/mutation/plugin.py's MODULE_TESTS."""
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    config = tomllib.load(f)["tool"]["mutmut"]
  tests = {t for files in MODULE_TESTS.values() for t in files}
  if (
    set(config["only_mutate"]) != set(MODULE_TESTS)
    or set(config["pytest_add_cli_args_test_selection"]) != tests
  ):
    raise SystemExit("pyproject.toml's [tool.mutmut] and tests/mutation/plugin.py disagree")
  return config["only_mutate"]


def _status(code: int | None) -> str:
  if code is None:
    return "not run"
  if code in KILLED:
    return "killed"
  if code in TIMEOUT:
    return "timeout"
  if code in UNREACHED:
    return "no tests"
  if code == 0:
    return "survived"
  return f"suspicious ({code})"


def _function_name(mangled: str) -> str:
  if mangled.startswith("x" + CLASS_SEPARATOR):
    _, cls, method = mangled.split(CLASS_SEPARATOR)
    return f"{cls}.{method}"
  return mangled.removeprefix("x_")


def _bodies(source: str) -> dict[str, list[str]]:
  """Stripped source lines of every mutant function in a mutated file, its name replaced by
  `FUNCTION` so that the original and a mutant differ only where the mutation is."""
  tree = ast.parse(source)
  lines = source.splitlines()
  bodies = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name:
      body = [line.strip() for line in lines[node.lineno - 1 : node.end_lineno]]
      body[0] = body[0].replace(node.name, "FUNCTION", 1)
      bodies[node.name] = body
  return bodies


def read_module(path: str) -> list[Mutant]:
  """The mutants of one module with their changes and statuses ([] if mutmut has no record)."""
  meta = os.path.join(REPO, "mutants", path + ".meta")
  if not os.path.exists(meta):
    return []
  with open(meta) as f:
    codes = json.load(f)["exit_code_by_key"]
  with open(os.path.join(REPO, "mutants", path), encoding="utf-8") as f:
    bodies = _bodies(f.read())
  mutants = []
  for key, code in codes.items():
    name = key.rpartition(".")[2]
    mangled = name.partition("__mutmut_")[0]
    original, mutated = bodies[mangled + "__mutmut_orig"], bodies[name]
    removed, added = [], []
    for line in difflib.ndiff(original, mutated):
      if line.startswith("- "):
        removed.append(line[2:])
      elif line.startswith("+ "):
        added.append(line[2:])
    mutants.append(
      Mutant(key, _function_name(mangled), tuple(removed), tuple(added), _status(code))
    )
  return mutants


def _matches(entry: Equivalent, path: str, mutant: Mutant) -> bool:
  return (
    entry.path == path
    and entry.function == mutant.function
    and entry.removed == "\n".join(mutant.removed)
    and entry.added == "\n".join(mutant.added)
  )


COLUMNS = ("mutants", "killed", "timeout", "survived", "no tests", "equivalent", "other", "not run")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--all", action="store_true", help="also print the equivalent mutants")
  args = parser.parse_args(argv)
  table, left, equivalent, used = {}, [], [], set()
  for path in modules():
    counts = dict.fromkeys(COLUMNS, 0)
    for mutant in read_module(path):
      counts["mutants"] += 1
      status = mutant.status
      if status in ("survived", "no tests"):
        entry = next((e for e in EQUIVALENT if _matches(e, path, mutant)), None)
        if entry is not None:
          used.add(entry)
          equivalent.append((path, mutant, entry.reason))
          status = "equivalent"
        else:
          left.append((path, mutant))
      counts[status if status in counts else "other"] += 1
      if status.startswith("suspicious"):
        left.append((path, mutant))
    table[path] = counts
  print(f"{'module':<30}" + "".join(f"{c:>11}" for c in COLUMNS))
  for path, counts in table.items():
    print(f"{path:<30}" + "".join(f"{counts[c]:>11}" for c in COLUMNS))
  totals = {c: sum(counts[c] for counts in table.values()) for c in COLUMNS}
  print(f"{'total':<30}" + "".join(f"{totals[c]:>11}" for c in COLUMNS))
  if not totals["mutants"]:
    print("no mutmut results under mutants/: run `make mutate` first")
    return 1
  if args.all:
    for path, mutant, reason in equivalent:
      print(f"\nequivalent {path} {mutant.function} ({mutant.key}): {reason}\n{mutant.diff()}")
  for path, mutant in left:
    print(f"\n{mutant.status}: {path} {mutant.function} ({mutant.key})\n{mutant.diff()}")
  stale = [e for e in EQUIVALENT if e not in used]
  run_paths = {p for p, c in table.items() if c["mutants"] > c["not run"]}
  for entry in stale:
    if entry.path in run_paths:
      print(f"\nnote: equivalent entry matched no surviving mutant: {entry.path} {entry.function}")
  print(
    f"\n{len(left)} mutants left (undocumented survivors, unreached or suspicious);"
    f" {len(equivalent)} documented equivalent"
  )
  return 1 if left else 0


if __name__ == "__main__":
  sys.exit(main())
