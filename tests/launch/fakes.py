"""Stand-ins for cluster tools: a script named like the tool, first on PATH, that records its
arguments (NUL-separated) and its stdin, so launchers can be tested without a cluster."""

from __future__ import annotations

import importlib
import os
import pathlib
import stat
import sys
from types import ModuleType

REPO = pathlib.Path(__file__).resolve().parents[2]


def launcher(name: str) -> ModuleType:
  """launch/<name>.py as a module (launch/ holds scripts, not a package; sweep.py imports
  gke_tpu.py from its own directory the same way)."""
  if str(REPO / "launch") not in sys.path:
    sys.path.insert(0, str(REPO / "launch"))
  return importlib.import_module(name)


def fake_tool(
  bin_dir: pathlib.Path, name: str, exit_status: int = 0, say: str = ""
) -> pathlib.Path:
  """Writes bin_dir/name; each call appends to bin_dir/name.calls: argv then stdin, NUL-ended."""
  bin_dir.mkdir(parents=True, exist_ok=True)
  log = bin_dir / f"{name}.calls"
  script = bin_dir / name
  script.write_text(
    "#!/bin/sh\n"
    f"log='{log}'\n"
    'printf "%s\\0" "$#" "$@" >> "$log"\n'
    'if [ -t 0 ]; then stdin=""; else stdin=$(cat; echo .); stdin=${stdin%.}; fi\n'
    'printf "%s\\0" "$stdin" >> "$log"\n'
    f"printf '%s' '{say}'\n"
    f"exit {exit_status}\n"
  )
  script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
  return log


def calls(log: pathlib.Path) -> list[tuple[list[str], str]]:
  """The recorded (argv, stdin) of every call, oldest first; [] if the tool never ran."""
  if not log.exists():
    return []
  fields = log.read_text().split("\0")[:-1]
  result = []
  while fields:
    argc = int(fields.pop(0))
    argv, fields = fields[:argc], fields[argc:]
    result.append((argv, fields.pop(0)))
  return result


def path_with(bin_dir: pathlib.Path) -> str:
  return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
