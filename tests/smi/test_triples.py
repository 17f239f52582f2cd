import json

import pytest

from jaxlab.smi.triples import Triple, fill_template, load_templates, load_triples


def test_load_jsonl_and_json_array(tmp_path):
  rows = [
    {"subj": "Edmonton", "rel": "capital", "obj": "Alberta", "idx": 7},
    {"subj": "Zürich", "rel": "locate", "obj": "Switzerland"},
  ]
  jsonl = tmp_path / "t.jsonl"
  jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
  array = tmp_path / "t.json"
  array.write_text(json.dumps(rows), encoding="utf-8")
  expected = [
    Triple("Edmonton", "capital", "Alberta", 7),
    Triple("Zürich", "locate", "Switzerland", None),
  ]
  assert load_triples(str(jsonl)) == (expected, 0)
  assert load_triples(str(array)) == (expected, 0)


@pytest.mark.parametrize(
  "line,message",
  [
    ('{"subj": "A", "rel": "r"}', "field 'obj' must be a non-empty string, got None"),
    ('{"subj": "", "rel": "r", "obj": "B"}', "field 'subj' must be a non-empty string, got ''"),
    ('{"subj": "A", "rel": "r", "obj": "B", "idx": "3"}', "field 'idx' must be an integer"),
    ('["A", "r", "B"]', "expected an object with subj, rel, obj, got list"),
    ('{"subj": "A", ', "invalid JSON"),
  ],
)
def test_malformed_row_names_file_and_line_or_is_skipped(tmp_path, line, message):
  path = tmp_path / "t.jsonl"
  path.write_text('{"subj": "A", "rel": "r", "obj": "B"}\n' + line + "\n", encoding="utf-8")
  with pytest.raises(ValueError) as e:
    load_triples(str(path))
  assert str(e.value).startswith(f"{path}:2: {message}")
  assert "\n" not in str(e.value)
  assert load_triples(str(path), skip_malformed=True) == ([Triple("A", "r", "B")], 1)


def test_malformed_json_array_item(tmp_path):
  path = tmp_path / "t.json"
  path.write_text('[{"subj": "A", "rel": "r", "obj": "B"}, {"subj": "A"}]')
  with pytest.raises(ValueError, match=r"t\.json: item 1: field 'rel'"):
    load_triples(str(path))
  path.write_text('[{"subj": "A",\n "rel": }]')
  with pytest.raises(ValueError, match=r"t\.json:2: invalid JSON"):
    load_triples(str(path))


def test_templates(tmp_path):
  path = tmp_path / "templates.json"
  path.write_text(json.dumps({"capital": ["[S] is the capital of", "The capital [S] lies in"]}))
  templates = load_templates(str(path))
  assert templates == {"capital": ["[S] is the capital of", "The capital [S] lies in"]}
  assert fill_template(templates["capital"][0], "Edmonton") == "Edmonton is the capital of"


@pytest.mark.parametrize(
  "content,message",
  [
    (
      {"capital": ["[S] is the capital of", "The capital of [X] is"]},
      "relation 'capital': template 'The capital of [X] is' does not contain [S]",
    ),
    ({"born": []}, "relation 'born': expected a non-empty list of templates"),
    (["[S] is"], "expected an object mapping relation -> list of templates"),
  ],
)
def test_bad_templates_name_file_and_relation(tmp_path, content, message):
  path = tmp_path / "templates.json"
  path.write_text(json.dumps(content))
  with pytest.raises(ValueError) as e:
    load_templates(str(path))
  assert str(e.value) == f"{path}: {message}"
