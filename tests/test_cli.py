import os
import stat
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


def test_write_jsonl_atomic_writes_utf8_rows(tmp_path):
  path = tmp_path / "out" / "rows.jsonl"
  cli.write_jsonl_atomic(str(path), iter([{"subj": "Zürich", "n": 1}, {"subj": "東京"}]))
  assert path.read_text(encoding="utf-8") == '{"subj": "Zürich", "n": 1}\n{"subj": "東京"}\n'


def test_write_jsonl_atomic_leaves_the_old_file_when_rows_fail(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text("old\n")

  def rows():
    yield {"a": 1}
    raise ValueError("bad row")

  with pytest.raises(ValueError):
    cli.write_jsonl_atomic(str(path), rows())
  assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["rows.jsonl"]


@pytest.fixture
def umask():
  """Sets the process umask for one test, restoring the previous one afterwards."""
  previous = os.umask(0o022)
  yield os.umask
  os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mask, mode):
  umask(mask)
  cli.write_text_atomic(str(tmp_path / "a.txt"), "text\n")
  cli.write_jsonl_atomic(str(tmp_path / "b.jsonl"), [{"a": 1}])
  with open(tmp_path / "plain.txt", "w") as f:
    f.write("text\n")
  modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
  assert modes == {"a.txt": mode, "b.jsonl": mode, "plain.txt": mode}


def test_atomic_write_replacing_a_file_gets_the_umask_mode(tmp_path, umask):
  umask(0o002)
  path = tmp_path / "a.txt"
  path.write_text("old\n")
  path.chmod(0o600)
  cli.write_text_atomic(str(path), "new\n")
  assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o664


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
