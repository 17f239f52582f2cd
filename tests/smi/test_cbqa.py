import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlab.eval.run_loading import load_run
from jaxlab.experiments import lm_pretrain
from jaxlab.smi.cbqa import build_prompts, cbqa_accuracy, merge_counts
from jaxlab.smi.triples import Triple
from tests.train.helpers import tiny_config

TRIPLES = [Triple("Kobara", "capital", "Tel"), Triple("Mizu", "born", "Ro")]
TEMPLATES = {"capital": ["[S] is the capital of", "Capital: [S] of"], "born": ["[S] was born in"]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  lm_pretrain.run(tiny_config(steps=2), workdir, jax.devices()[:1])
  return workdir


def test_build_prompts():
  assert build_prompts(TRIPLES, TEMPLATES, 1) == [
    (0, "Kobara is the capital of"),
    (1, "Mizu was born in"),
  ]
  assert len(build_prompts(TRIPLES, TEMPLATES, 20)) == 3
  with pytest.raises(ValueError, match="no templates for relation"):
    build_prompts([Triple("A", "died", "B")], TEMPLATES, 1)


def test_accuracy_counts_substring_hits_per_triple(run_dir):
  run = load_run(run_dir)
  # A one-character object appears in most random byte generations; an object no byte
  # sequence of this length can contain never does.
  triples = [Triple("Kobara", "capital", " "), Triple("Mizu", "born", "x" * 50)]
  acc = cbqa_accuracy(
    run,
    triples,
    TEMPLATES,
    samples=3,
    max_new_tokens=8,
    temperature=1.0,
    batch_size=4,
    progress=False,
  )
  assert acc[1] == 0.0 and 0.0 < acc[0] <= 1.0
  again = cbqa_accuracy(
    run,
    triples,
    TEMPLATES,
    samples=3,
    max_new_tokens=8,
    temperature=1.0,
    batch_size=4,
    progress=False,
  )
  assert acc == again  # seeded


def _counts_row(subj, rel, obj, n_both):
  return {
    "subj": subj,
    "rel": rel,
    "obj": obj,
    "n_docs": 10,
    "n_subj": 3,
    "n_obj": 4,
    "n_both": n_both,
  }


def test_merge_counts_joins_on_the_triple(tmp_path):
  # Each row matches one triple in two of its three fields only, except the Mizu row.
  counts = [
    _counts_row("Kobara", "capital", "Ro", 2),
    _counts_row("Kobara", "born", "Tel", 3),
    _counts_row("Mizu", "capital", "Ro", 4),
    _counts_row("Mizu", "born", "Ro", 1),
    _counts_row("Kobara", "capital", "Telos", 5),
  ]
  path = tmp_path / "counts.jsonl"
  path.write_text("".join(json.dumps(row) + "\n" for row in counts))
  records = merge_counts(TRIPLES, [0.5, 0.25], str(path))
  assert records == [
    {"subj": "Kobara", "rel": "capital", "obj": "Tel", "acc": 0.5},  # no counts row of its own
    {
      "subj": "Mizu",
      "rel": "born",
      "obj": "Ro",
      "n_docs": 10,
      "n_subj": 3,
      "n_obj": 4,
      "n_both": 1,
      "acc": 0.25,
    },
  ]
  # Records follow the triples, not the counts file; accuracies become plain floats.
  flipped = merge_counts(TRIPLES[::-1], np.array([0.75, 1]), str(path))
  assert [(r["subj"], r.get("n_both"), r["acc"]) for r in flipped] == [
    ("Mizu", 1, 0.75),
    ("Kobara", None, 1.0),
  ]
  assert all(type(r["acc"]) is float for r in flipped)
  assert merge_counts(TRIPLES, [0.5, 0.25], None) == [
    {"subj": "Kobara", "rel": "capital", "obj": "Tel", "acc": 0.5},
    {"subj": "Mizu", "rel": "born", "obj": "Ro", "acc": 0.25},
  ]


def test_cli_end_to_end_and_bad_input(run_dir, tmp_path):
  triples = tmp_path / "t.jsonl"
  triples.write_text(
    "".join(json.dumps({"subj": t.subj, "rel": t.rel, "obj": t.obj}) + "\n" for t in TRIPLES)
  )
  templates = tmp_path / "tpl.json"
  templates.write_text(json.dumps(TEMPLATES))
  counts = tmp_path / "counts.jsonl"
  counts.write_text(
    json.dumps(
      {
        "subj": "Mizu",
        "rel": "born",
        "obj": "Ro",
        "n_docs": 10,
        "n_subj": 3,
        "n_obj": 2,
        "n_both": 1,
      }
    )
    + "\n"
  )
  out = tmp_path / "records.jsonl"
  base = [
    sys.executable,
    "-m",
    "jaxlab.smi.cbqa",
    "--workdir",
    run_dir,
    "--triples",
    str(triples),
    "--templates",
    str(templates),
    "--samples",
    "2",
    "--max_new_tokens",
    "4",
    "--batch_size",
    "8",
  ]
  result = subprocess.run(
    base + ["--out", str(out), "--counts", str(counts)], capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-2000:]
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["subj"] for r in records] == ["Kobara", "Mizu"] and records[1]["n_both"] == 1
  assert all(0.0 <= r["acc"] <= 1.0 for r in records)
  bad = subprocess.run(
    base + ["--out", str(tmp_path / "x.jsonl"), "--workdir", str(tmp_path)],
    capture_output=True,
    text=True,
  )
  assert (
    bad.returncode == 2
    and bad.stderr.strip().startswith("error:")
    and "no config.json" in bad.stderr
  )
  assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize(
  "text,message",
  [
    ('{"subj": "Mizu"\n', "counts.jsonl:1: "),
    ('{"subj": "Mizu", "rel": "born"}\n', "counts.jsonl:1: a counts row needs subj, rel and obj"),
  ],
)
def test_bad_counts_rows_are_one_line_errors(tmp_path, text, message):
  path = tmp_path / "counts.jsonl"
  path.write_text(text)
  with pytest.raises(ValueError, match=message) as error:
    merge_counts(TRIPLES, [0.5, 0.25], str(path))
  assert "\n" not in str(error.value)
