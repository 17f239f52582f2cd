import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxlab.smi.corpus_io import iter_documents


def test_text_lines_jsonl_and_parquet(tmp_path):
  txt = tmp_path / "a.txt"
  txt.write_bytes(b"first doc\r\nsecond \xc3\xa9\n\n   \nlast")
  assert list(iter_documents(str(txt))) == ["first doc", "second é", "   ", "last"]
  jsonl = tmp_path / "a.jsonl"
  jsonl.write_text('{"text": "one\\ntwo", "id": 1}\n\n{"text": ""}\n')
  assert list(iter_documents(str(jsonl))) == ["one\ntwo", ""]
  parquet = tmp_path / "a.parquet"
  pq.write_table(pa.table({"text": ["x", " y"], "n": [1, 2]}), parquet, row_group_size=1)
  assert list(iter_documents(str(parquet))) == ["x", " y"]


@pytest.mark.parametrize(
  "name,content,message",
  [
    (
      "c.jsonl",
      '{"text": "ok"}\n{"text": 3}\n',
      "c.jsonl:2: expected an object with a string 'text'",
    ),
    ("c.jsonl", '{"text": "ok"}\n{"text": "a\n', "c.jsonl:2: invalid JSON"),
    ("c.txt", b"ok\n\xff\n", "c.txt:2: invalid UTF-8"),
    ("c.csv", "text\n", "c.csv: unknown corpus file type; expected one of .jsonl, .json, .txt"),
  ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(ValueError) as e:
    list(iter_documents(str(path)))
  assert str(e.value).startswith(f"{tmp_path}/{message}")


def test_bad_parquet(tmp_path):
  path = tmp_path / "d.parquet"
  pq.write_table(pa.table({"body": ["x"]}), path)
  with pytest.raises(ValueError, match="d.parquet: Parquet file has no 'text' column"):
    list(iter_documents(str(path)))
  pq.write_table(pa.table({"text": ["x", None]}), path)
  with pytest.raises(ValueError, match=r"d.parquet:2: 'text' must be a string, got None"):
    list(iter_documents(str(path)))
  path.write_text("not parquet")
  with pytest.raises(ValueError, match="d.parquet: not a readable Parquet file"):
    list(iter_documents(str(path)))
