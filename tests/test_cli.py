import os

import pytest

from jaxlab import cli


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
