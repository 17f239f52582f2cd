import json
import os
import random
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxlab.smi.count import count_triples, count_triples_naive
from jaxlab.smi.matcher import format_rows
from jaxlab.smi.triples import Triple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Names chosen to exercise the matching rule: nested (" York" inside " New York"), no right word
# boundary (" Paris" in " Parisian"), case (" paris"), overlapping self-matches (" a a" in
# " a a a"), a name that is both subject and object, non-ASCII, and a name never in the corpus.
TRIPLES = [
  Triple("New York", "locate", "United States", 0),
  Triple("York", "locate", "England", 1),
  Triple("Paris", "capital", "France", 2),
  Triple("paris", "capital", "France", 3),
  Triple("Paris", "born", "Paris"),
  Triple("a a", "rel", "a"),
  Triple("Zürich", "locate", "東京"),
  Triple("France", "play", "Paris"),
  Triple("Atlantis", "capital", "France"),
  Triple("Paris", "capital", "France", 9),
]
WORDS = [
  "the",
  "a",
  "of",
  "New",
  "York",
  "Paris",
  "Parisian",
  "paris",
  "France",
  "England",
  "United",
  "States",
  "Zürich",
  "東京",
  "a a",
  "x",
  "Yorkshire",
  "NewYork",
  "Paris,",
]


def _documents(n: int, seed: int = 0) -> list[str]:
  rng = random.Random(seed)
  return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """~240 generated documents over a JSONL, a plain-text and a Parquet file."""
  root = tmp_path_factory.mktemp("corpus")
  docs = _documents(240)
  docs[0] = "Paris is the capital of France"  # no leading space before Paris: not a match
  docs[1] = "in New York\nand York"  # JSONL and Parquet documents may hold newlines
  with open(root / "a.jsonl", "w", encoding="utf-8") as f:
    for doc in docs[:80]:
      f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
  pq.write_table(pa.table({"text": docs[80:160]}), root / "b.parquet", row_group_size=32)
  # Plain text: one document per line, so only non-empty documents without newlines.
  text_docs = [d for d in docs[160:] if d]
  (root / "c.txt").write_text("".join(d + "\n" for d in text_docs), encoding="utf-8")
  files = [str(root / n) for n in ("a.jsonl", "b.parquet", "c.txt")]
  return files, docs[:160] + text_docs


def test_local_counts_equal_naive_reference(corpus):
  files, docs = corpus
  expected = count_triples_naive(TRIPLES, docs)
  assert count_triples(TRIPLES, files, workers=1) == expected
  assert count_triples(TRIPLES, files, workers=2) == expected  # worker processes, summed
  by_idx = {r.get("idx"): r for r in expected}
  assert by_idx[0]["n_docs"] == len(docs) and by_idx[3]["n_subj"] > 0
  assert by_idx[1]["n_subj"] > by_idx[0]["n_subj"]  # " York" also matches inside " New York"
  assert expected[8]["n_subj"] == 0  # Atlantis


def test_counts_by_hand(tmp_path):
  """The matching rule on four documents counted by hand: a name matches after a space (not at
  the start of a document), with no right word boundary, once per document however often."""
  docs = [
    "Paris is the capital of France",  # France only: no space before Paris
    "in Paris, France",
    "a Parisian from France and France",
    "x New York and York",
  ]
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
  triples = [
    Triple("Paris", "capital", "France"),
    Triple("York", "locate", "England"),
    Triple("New York", "locate", "United States"),
  ]
  expected = [
    {"subj": "Paris", "rel": "capital", "obj": "France", "n_subj": 2, "n_obj": 3, "n_both": 2},
    {"subj": "York", "rel": "locate", "obj": "England", "n_subj": 1, "n_obj": 0, "n_both": 0},
    {
      "subj": "New York",
      "rel": "locate",
      "obj": "United States",
      "n_subj": 1,
      "n_obj": 0,
      "n_both": 0,
    },
  ]
  expected = [{**row, "n_docs": 4} for row in expected]
  assert count_triples(triples, [str(path)], workers=1) == expected
  assert count_triples_naive(triples, docs) == expected


def test_beam_direct_runner_equals_local(corpus, tmp_path):
  from jaxlab.smi.count_beam import count_triples_beam  # pylint: disable=g-import-not-at-top

  files, docs = corpus
  out = tmp_path / "beam.jsonl"
  assert count_triples_beam(TRIPLES, files, str(out)) == len(docs)
  assert out.read_text(encoding="utf-8") == format_rows(count_triples(TRIPLES, files, workers=1))
  assert sorted(os.listdir(tmp_path)) == ["beam.jsonl"]


def _run(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.fixture
def triples_file(tmp_path):
  path = tmp_path / "triples.jsonl"
  path.write_text(
    "".join(json.dumps({"subj": t.subj, "rel": t.rel, "obj": t.obj}) + "\n" for t in TRIPLES[:4])
  )
  return path


@pytest.mark.parametrize("runner", ["local", "beam"])
def test_count_cli(corpus, tmp_path, triples_file, runner):
  files, docs = corpus
  with open(triples_file, "a") as f:
    f.write('{"subj": "no object", "rel": "r"}\n')
  out = tmp_path / "out" / "counts.jsonl"
  result = _run(
    "jaxlab.smi.count",
    "--triples",
    str(triples_file),
    "--out",
    str(out),
    "--corpus",
    os.path.join(os.path.dirname(files[0]), "*"),
    "--runner",
    runner,
    "--workers",
    "2",
    "--skip_malformed",
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"skipped 1 malformed triple rows in {triples_file}" in result.stderr
  assert f"done, {len(docs):,} documents in " in result.stderr
  triples = [Triple(t.subj, t.rel, t.obj) for t in TRIPLES[:4]]
  assert out.read_text(encoding="utf-8") == format_rows(count_triples_naive(triples, docs))


def test_count_cli_bad_input_is_one_line_exit_2(corpus, tmp_path, triples_file):
  files, _ = corpus
  out = tmp_path / "counts.jsonl"
  bad_corpus = tmp_path / "bad.jsonl"
  bad_corpus.write_text('{"text": "ok"}\n{"txt": "no"}\n')
  bad_triples = tmp_path / "bad_triples.jsonl"
  bad_triples.write_text('{"subj": "A", "rel": "r"}\n')
  csv = tmp_path / "corpus.csv"
  csv.write_text("text\n")
  cases = [
    (
      ["--triples", str(bad_triples), "--corpus", files[0]],
      f"error: {bad_triples}:1: field 'obj' must be a non-empty string, got None",
    ),
    (
      ["--triples", str(triples_file), "--corpus", str(tmp_path / "none*.txt")],
      f"error: --corpus: no file matches '{tmp_path}/none*.txt'",
    ),
    (
      ["--triples", str(triples_file), "--corpus", str(csv)],
      f"error: {csv}: unknown corpus file type; expected one of .jsonl, .json, .txt, .parquet",
    ),
    (
      ["--triples", str(triples_file), "--corpus", str(bad_corpus), "--workers", "1"],
      f"error: {bad_corpus}:2: expected an object with a string 'text' field",
    ),
    (
      ["--triples", str(triples_file), "--corpus", files[0], "--runner", "spark"],
      "error: argument --runner: invalid choice: 'spark'",
    ),
  ]
  for args, message in cases:
    result = _run("jaxlab.smi.count", "--out", str(out), *args)
    assert result.returncode == 2, (args, result.stderr)
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def _child_pids(pid: int) -> list[int]:
  """Processes whose parent is `pid`, read from /proc."""
  children = []
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/stat") as f:
        stat = f.read()
    except (OSError, ValueError):
      continue
    if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
      children.append(int(entry))
  return children


def _running(pid: int) -> bool:
  """Whether `pid` exists and has not exited (a zombie waiting for its reaper has)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds worker processes in /proc")
def test_count_cli_ctrl_c_is_one_line_exit_130(tmp_path, triples_file):
  # The corpus is a named pipe this test writes a few documents into and keeps open: a worker
  # blocks reading it, so counting is still going on whenever Ctrl-C arrives (no timing race).
  fifo = tmp_path / "part0.jsonl"
  os.mkfifo(fifo)
  out = tmp_path / "counts.jsonl"
  args = ["--triples", str(triples_file), "--corpus", str(tmp_path / "part*.jsonl")]
  process = subprocess.Popen(
    [sys.executable, "-m", "jaxlab.smi.count", *args, "--out", str(out), "--workers", "2"],
    cwd=REPO,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,  # its own process group, as a shell job: Ctrl-C reaches every process
    # A shell's background jobs start with SIGINT ignored (so may this test): give the command
    # the default disposition a terminal's foreground job has.
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )
  writer = open(fifo, "w", encoding="utf-8")  # returns once a worker has opened the pipe
  try:
    writer.write(json.dumps({"text": " ".join(WORDS)}) + "\n")
    writer.flush()
    workers = _child_pids(process.pid)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    time.sleep(1.0)
    writer.close()  # end of the pipe: nothing is left blocked on it once the count stops
    _, stderr = process.communicate(timeout=60)
  finally:
    if not writer.closed:
      writer.close()
    if process.poll() is None:
      process.kill()
    fifo.unlink()
  assert (process.returncode, stderr) == (130, "interrupted\n")
  assert sorted(os.listdir(tmp_path)) == ["triples.jsonl"]  # no output, no temporary file
  assert not [pid for pid in workers if _running(pid)]  # no worker left behind


def test_count_and_fit_clis_read_and_write_a_bucket(
  corpus, tmp_path, triples_file, bucket_dir, capsys
):
  """The SMI tools on gs:// (a local GCS server, tests/gcs_emulator.py): the same counts as the
  naive reference, and a fit of records in the bucket written back to it."""
  from jaxlab import fileio
  from jaxlab.smi import count, fit
  from tests.cli_helpers import run_main

  from .test_metric_fit import RECORDS

  files, docs = corpus
  for path in files:
    fileio.copy(path, f"{bucket_dir}/corpus/{os.path.basename(path)}")
  fileio.copy(str(triples_file), f"{bucket_dir}/triples.jsonl")
  argv = ["--triples", f"{bucket_dir}/triples.jsonl", "--corpus", f"{bucket_dir}/corpus/*"]
  status, _, err = run_main(count.main, [*argv, "--out", f"{bucket_dir}/counts.jsonl"], capsys)
  assert status == 0, err
  triples = [Triple(t.subj, t.rel, t.obj) for t in TRIPLES[:4]]
  expected = format_rows(count_triples_naive(triples, docs))
  assert fileio.read_text(f"{bucket_dir}/counts.jsonl") == expected

  fileio.write_jsonl_atomic(f"{bucket_dir}/records.jsonl", RECORDS)
  argv = ["--records", f"{bucket_dir}/records.jsonl", "--params", "7e9"]
  status, out, err = run_main(fit.main, [*argv, "--out", f"{bucket_dir}/fit"], capsys)
  assert status == 0, err
  assert fileio.read_json(f"{bucket_dir}/fit/fit.json")["n_triples"] == 7
  assert out.startswith("n_triples=7 n_dropped=3")
  names = sorted(fileio.listdir(f"{bucket_dir}/fit"))
  assert names == ["fit.json", "scatter_CO-OCCUR.png", "scatter_MI.png", "scatter_SMI.png"]
