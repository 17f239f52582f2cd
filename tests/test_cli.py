import os
import subprocess
import sys

import pytest

from jaxlab import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fail_is_one_line_on_stderr_and_exit_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.fail("bad value\nTraceback details")
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == "error: bad value\n"


_INTERRUPTED_MAIN = """
import atexit
from jaxlab import cli

atexit.register(lambda: print("exit handlers ran"))

@cli.exit_cleanly_on_interrupt()
def main():
  print("started", flush=True)
  with cli.exit_cleanly_on_interrupt():  # nothing happens without an interrupt
    pass
  raise KeyboardInterrupt

main()
"""


def test_exit_cleanly_on_interrupt_is_one_line_exit_130():
  result = subprocess.run(
    [sys.executable, "-c", _INTERRUPTED_MAIN],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert (result.returncode, result.stderr) == (130, "interrupted\n")
  assert result.stdout == "started\nexit handlers ran\n"
