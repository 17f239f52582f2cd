"""The path layer: atomic writes with a plain open()'s permissions, and local paths (bucket
URLs are tested against a local GCS emulator in tests/test_bucket_runs.py)."""

import os
import stat

import pytest

from jaxlab import fileio


def test_write_jsonl_atomic_writes_utf8_rows(tmp_path):
  path = tmp_path / "out" / "rows.jsonl"
  fileio.write_jsonl_atomic(str(path), iter([{"subj": "Zürich", "n": 1}, {"subj": "東京"}]))
  assert path.read_text(encoding="utf-8") == '{"subj": "Zürich", "n": 1}\n{"subj": "東京"}\n'


def test_write_jsonl_atomic_leaves_the_old_file_when_rows_fail(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text("old\n")

  def rows():
    yield {"a": 1}
    raise ValueError("bad row")

  with pytest.raises(ValueError):
    fileio.write_jsonl_atomic(str(path), rows())
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
  fileio.write_text_atomic(str(tmp_path / "a.txt"), "text\n")
  fileio.write_jsonl_atomic(str(tmp_path / "b.jsonl"), [{"a": 1}])
  with open(tmp_path / "plain.txt", "w") as f:
    f.write("text\n")
  modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
  assert modes == {"a.txt": mode, "b.jsonl": mode, "plain.txt": mode}


def test_atomic_write_replacing_a_file_gets_the_umask_mode(tmp_path, umask):
  umask(0o002)
  path = tmp_path / "a.txt"
  path.write_text("old\n")
  path.chmod(0o600)
  fileio.write_text_atomic(str(path), "new\n")
  assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o664


def test_local_and_bucket_paths_behave_alike(tmp_path, bucket_dir):
  for root in (str(tmp_path / "local"), bucket_dir):
    fileio.makedirs(root)
    fileio.write_text_atomic(f"{root}/a/config.json", '{"x": 1}\n')
    fileio.write_jsonl_atomic(f"{root}/a/rows.jsonl", [{"t": "Zürich"}, {"t": "東京"}])
    fileio.write_json_atomic(f"{root}/b.json", {"y": [1, 2]})
    assert fileio.read_json(f"{root}/a/config.json") == {"x": 1}
    assert fileio.read_text(f"{root}/a/rows.jsonl") == '{"t": "Zürich"}\n{"t": "東京"}\n'
    assert fileio.read_bytes(f"{root}/b.json") == b'{\n  "y": [\n    1,\n    2\n  ]\n}\n'
    assert fileio.read_json_if_exists(f"{root}/missing.json") is None
    assert fileio.isfile(f"{root}/b.json") and not fileio.isdir(f"{root}/b.json")
    assert fileio.isdir(f"{root}/a") and not fileio.isfile(f"{root}/a")
    assert not fileio.exists(f"{root}/missing.json")
    assert sorted(fileio.listdir(f"{root}/a")) == ["config.json", "rows.jsonl"]
    assert fileio.glob(f"{root}/a/*.json*") == [f"{root}/a/config.json", f"{root}/a/rows.jsonl"]
    with fileio.open_file(f"{root}/a/rows.jsonl", "rb") as f:
      f.seek(17)  # past the first line: 17 bytes, "ü" is two
      assert f.read(6) == b'{"t": '
    fileio.copy(f"{root}/b.json", f"{root}/c/b.json")
    fileio.rename(f"{root}/a", f"{root}/moved")
    assert not fileio.exists(f"{root}/a/config.json")
    assert fileio.read_json(f"{root}/moved/config.json") == {"x": 1}
    assert fileio.read_json(f"{root}/c/b.json") == {"y": [1, 2]}
    fileio.rmtree(f"{root}/moved")
    assert not fileio.exists(f"{root}/moved/config.json")
    assert fileio.absolute(root) == (root if root.startswith("gs://") else os.path.abspath(root))


def test_a_failed_bucket_write_leaves_the_old_object(bucket_dir):
  path = f"{bucket_dir}/rows.jsonl"
  fileio.write_text_atomic(path, "old\n")

  def rows():
    yield {"a": 1}
    raise ValueError("bad row")

  with pytest.raises(ValueError):
    fileio.write_jsonl_atomic(path, rows())
  with pytest.raises(ValueError):
    fileio.write_jsonl_atomic(f"{bucket_dir}/new.jsonl", rows())
  assert fileio.read_text(path) == "old\n"
  assert fileio.listdir(bucket_dir) == ["rows.jsonl"]


def test_figures_are_saved_to_a_bucket(bucket_dir):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(2, 2))
  figure.subplots().plot([0, 1], [1, 0])
  fileio.save_figure(figure, f"{bucket_dir}/plot.png", dpi=50)
  assert fileio.read_bytes(f"{bucket_dir}/plot.png")[:8] == b"\x89PNG\r\n\x1a\n"
