"""jaxlab.data.seqio_tasks and `data.kind=seqio`: JSONL and SMI corpora as seqio Tasks, and seqio
Tasks and Mixtures through jaxlab's tokenizer, packer, host shards and resumable iterator.

Tests marked `seqio` need the seqio extra (TensorFlow): `make test-seqio` installs it and runs
them, and fails if seqio is missing; `make test` leaves them out (pyproject's addopts). The one
unmarked test simulates a machine without seqio, whatever is installed here.
"""

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from jaxlab.data import seqio_tasks
from jaxlab.data.checks import check_data
from jaxlab.data.pipeline import build_lm_iterator
from jaxlab.data.tokenizers import ByteTokenizer

from .helpers import (
  assert_batches_equal,
  corpus,
  data_config,
  documents_in,
  numbered_docs,
  take,
  texts,
  write_jsonl,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQ_LEN = 16  # One 12-byte numbered document per packed row.
needs_seqio = pytest.mark.seqio


def unique(prefix: str) -> str:
  """A task name no other test registered (seqio's registry is process-wide)."""
  return f"jaxlab_test_{prefix}_{uuid.uuid4().hex[:8]}"


def task_texts(name: str, split: str = "train", **kwargs) -> list[str]:
  seqio, _ = seqio_tasks.import_seqio()
  ds = seqio.get_mixture_or_task(name).get_dataset(
    sequence_length=None, split=split, shuffle=False, num_epochs=1, **kwargs
  )
  return [row["text"].decode("utf-8") for row in ds.as_numpy_iterator()]


def seqio_config(task: str, **overrides):
  return data_config(**{"kind": "seqio", "seqio_task": task, **overrides})


@pytest.fixture
def numbered_task(tmp_path):
  """A task over 64 train and 8 validation numbered documents (one JSONL file each), and the
  data config that reads the same files as kind jsonl."""
  train = write_jsonl(tmp_path / "train.jsonl", numbered_docs(64))
  eval_path = write_jsonl(tmp_path / "eval.jsonl", numbered_docs(8, start=100))
  name = unique("numbered")
  seqio_tasks.register_jsonl_task(name, train, eval_path)
  return name, data_config(kind="jsonl", train_files=train, eval_files=eval_path)


def test_seqio_kind_without_seqio_is_one_line(monkeypatch):
  """No seqio needed: its absence is simulated, so this holds with or without the extra."""
  monkeypatch.setitem(sys.modules, "seqio", None)
  cfg = seqio_config("any_task")
  expected = "data.kind 'seqio': seqio is not installed (pip install -e '.[seqio]'): "
  for build in (
    lambda: check_data(cfg),
    lambda: build_lm_iterator(cfg, seq_len=SEQ_LEN, global_batch=2, split="train", seed=0),
  ):
    with pytest.raises(ValueError) as error:
      build()
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
  with pytest.raises(ValueError, match=r"^data.kind 'seqio' needs data.seqio_task \(a seqio"):
    check_data(seqio_config(""))


@needs_seqio
def test_jsonl_task_yields_the_files_texts_in_order(tmp_path):
  docs = ["first", "ünïcödé ✓", 'quote " and \\ backslash', "line\nbreak", "last"]
  path = tmp_path / "docs.jsonl"
  write_jsonl(path, docs, field="body")
  with open(path, "a") as f:
    f.write("\n  \n")  # blank lines are not documents
  write_jsonl(tmp_path / "eval.jsonl", ["held out"], field="body")
  name = unique("docs")
  seqio_tasks.register_jsonl_task(name, str(path), str(tmp_path / "eval.jsonl"), text_field="body")
  seqio, _ = seqio_tasks.import_seqio()
  task = seqio.get_mixture_or_task(name)
  assert sorted(task.splits) == ["train", "validation"] and list(task.output_features) == ["body"]
  ds = task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
  assert [row["body"].decode("utf-8") for row in ds.as_numpy_iterator()] == docs
  ds = task.get_dataset(sequence_length=None, split="validation", shuffle=False, num_epochs=1)
  assert [row["body"].decode("utf-8") for row in ds.as_numpy_iterator()] == ["held out"]


@needs_seqio
def test_seqio_kind_packs_the_same_batches_as_jsonl(numbered_task):
  """Unshuffled, the seqio task and kind jsonl over the same files give identical batches: the
  same documents through the same tokenizer and packer (shuffled, seqio's order is its own)."""
  name, jsonl = numbered_task
  jsonl.shuffle = False
  seqio_cfg = seqio_config(name, shuffle=False)
  for split, global_batch, count in (("train", 4, 40), ("eval", 3, 3)):
    args = dict(seq_len=SEQ_LEN, global_batch=global_batch, split=split, seed=0)
    expected = take(build_lm_iterator(jsonl, **args), count)
    assert_batches_equal(take(build_lm_iterator(seqio_cfg, **args), count), expected)
  assert texts(expected) == numbered_docs(8, start=100)  # one eval pass, last row padding


@needs_seqio
def test_hosts_read_disjoint_shards_that_cover_the_data(numbered_task):
  name, _ = numbered_task
  cfg = seqio_config(name)
  eval_docs, train_docs = [], []
  for process_index in range(2):
    args = dict(seq_len=SEQ_LEN, global_batch=4, seed=0, process_index=process_index)
    batches = list(build_lm_iterator(cfg, split="eval", process_count=2, **args))
    assert all(batch["inputs"].shape == (2, SEQ_LEN) for batch in batches)
    eval_docs.append(texts(batches))
    train = build_lm_iterator(cfg, split="train", process_count=2, **args)
    train_docs.append(set(texts(take(train, 64))))
  assert sorted(eval_docs[0] + eval_docs[1]) == numbered_docs(8, start=100)
  assert not set(eval_docs[0]) & set(eval_docs[1])
  assert not train_docs[0] & train_docs[1]
  assert train_docs[0] | train_docs[1] <= set(numbered_docs(64))
  assert min(len(docs) for docs in train_docs) >= 28  # of each host's 32, in 128 shuffled rows


@needs_seqio
def test_resume_from_get_state_continues_identically(numbered_task):
  name, _ = numbered_task
  build = lambda: build_lm_iterator(
    seqio_config(name), seq_len=SEQ_LEN, global_batch=4, split="train", seed=3
  )
  iterator = build()
  take(iterator, 7)
  state = json.loads(json.dumps(iterator.get_state()))
  expected = take(iterator, 5)
  resumed = build()
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 5), expected)
  iterator.set_state(state)  # back to an earlier position
  assert_batches_equal(take(iterator, 5), expected)
  other_seed = build_lm_iterator(
    seqio_config(name), seq_len=SEQ_LEN, global_batch=4, split="train", seed=4
  )
  assert texts(take(other_seed, 12)) != texts(take(build(), 12))
  for it in (iterator, resumed, other_seed):
    it.close()


@needs_seqio
def test_a_mixture_trains_on_both_tasks_at_its_rates(tmp_path):
  seqio, _ = seqio_tasks.import_seqio()
  names = []
  for letter in "ab":
    docs = [f"{letter * 4}-{i:04d}-xyz" for i in range(50)]
    names.append(unique(letter))
    seqio_tasks.register_jsonl_task(
      names[-1], write_jsonl(tmp_path / f"{letter}.jsonl", docs), str(tmp_path / f"{letter}.jsonl")
    )
  mixture = unique("mix")
  seqio.MixtureRegistry.add(mixture, [(names[0], 3.0), (names[1], 1.0)])
  iterator = build_lm_iterator(
    seqio_config(mixture), seq_len=SEQ_LEN, global_batch=8, split="train", seed=0
  )
  docs = texts(take(iterator, 60))
  iterator.close()
  assert len(docs) == 480 and all(doc[:4] in ("aaaa", "bbbb") for doc in docs)
  share_a = sum(doc.startswith("aaaa") for doc in docs) / len(docs)
  assert abs(share_a - 0.75) < 0.08  # 3.6 standard deviations of 480 draws


@needs_seqio
def test_smi_corpus_task_from_a_generated_corpus(tmp_path):
  from jaxlab.smi import corpus_gen

  spec = corpus_gen.CorpusSpec(
    num_facts=12, num_relations=3, object_mentions_top=8, subject_mentions_top=2, seed=5
  )
  data_dir = tmp_path / "study" / "data"
  data_dir.mkdir(parents=True)
  corpus_gen.write_corpus(spec, str(data_dir), eval_docs=6)
  corpus = corpus_gen.generate(spec)
  documents = corpus.documents
  eval_docs = corpus_gen.heldout_documents(spec, corpus, 6)

  name = unique("smi")
  seqio_tasks.register_smi_corpus(name, str(tmp_path / "study"))  # the study's workdir
  assert task_texts(name) == documents
  assert task_texts(name, "validation") == eval_docs
  cfg = seqio_config(name, shuffle=False)
  seq_len = max(len(doc.encode()) for doc in eval_docs) + 1  # each document whole in a row
  batches = list(build_lm_iterator(cfg, seq_len=seq_len, global_batch=2, split="eval", seed=0))
  assert texts(batches) == eval_docs
  train = build_lm_iterator(seqio_config(name), seq_len=64, global_batch=2, split="train", seed=0)
  batch = next(train)
  train.close()
  pieces = documents_in(batch, ByteTokenizer())  # pieces of documents cut into 64-token rows
  assert pieces and all(any(piece in document for document in documents) for piece in pieces)
  with pytest.raises(ValueError, match=r"no SMI corpus \(corpus.jsonl here or in data/\)"):
    seqio_tasks.register_smi_corpus(unique("none"), str(tmp_path))


@needs_seqio
def test_a_tokenized_feature_is_decoded_then_tokenized_by_jaxlab(numbered_task, tmp_path):
  """A task whose feature holds token ids (here seqio's byte vocabulary) trains exactly as its
  text does: the ids are decoded with the feature's vocabulary and re-tokenized."""
  seqio, tf = seqio_tasks.import_seqio()
  name, jsonl = numbered_task
  tokenized = unique("tokenized")
  seqio.TaskRegistry.add(
    tokenized,
    source=seqio.get_mixture_or_task(name).source,
    output_features={"text": seqio.Feature(seqio.ByteVocabulary(), add_eos=True)},
    preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
  )
  args = dict(seq_len=SEQ_LEN, global_batch=4, split="train", seed=0)
  expected = take(build_lm_iterator(seqio_config(name, shuffle=False), **args), 20)
  got = take(build_lm_iterator(seqio_config(tokenized, shuffle=False), **args), 20)
  assert_batches_equal(got, expected)


@needs_seqio
@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      dict(seqio_task="{task}x"),
      "data.seqio_task: no seqio Task or Mixture '{task}x' (did you mean '{task}'?); "
      "data.seqio_modules is empty",
    ),
    (
      dict(seqio_modules="jaxlab_no_such_module"),
      "data.seqio_modules: cannot import 'jaxlab_no_such_module' (ModuleNotFoundError: No module "
      "named 'jaxlab_no_such_module')",
    ),
    (
      dict(seqio_eval_split="test"),
      "data.seqio_eval_split: seqio task '{task}' has no split 'test' (it has train, validation)",
    ),
    (
      dict(text_field="body"),
      "data.text_field: seqio task '{task}' has no feature 'body' (it has text)",
    ),
    (
      dict(worker_count=2),
      "data.worker_count must be 0 with data.kind 'seqio' (tf.data reads with its own threads)",
    ),
  ],
)
def test_bad_seqio_config_is_one_line(numbered_task, overrides, message):
  name, _ = numbered_task
  cfg = seqio_config(name, **overrides)
  cfg.seqio_task = cfg.seqio_task.format(task=name)
  with pytest.raises(ValueError) as error:
    check_data(cfg)
  assert str(error.value) == message.format(task=name)


@needs_seqio
def test_a_module_that_fails_and_a_malformed_file_are_one_line(tmp_path, monkeypatch):
  module = f"jaxlab_test_broken_{uuid.uuid4().hex[:8]}"
  (tmp_path / f"{module}.py").write_text("raise RuntimeError('no tasks today')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(ValueError) as error:
    check_data(seqio_config("anything", seqio_modules=module))
  assert str(error.value) == (
    f"data.seqio_modules: cannot import '{module}' (RuntimeError: no tasks today)"
  )
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"text": "fine"}\n{"text": broken\n')
  name = unique("bad")
  seqio_tasks.register_jsonl_task(name, str(bad), str(bad))
  iterator = build_lm_iterator(
    seqio_config(name), seq_len=SEQ_LEN, global_batch=2, split="eval", seed=0
  )
  with pytest.raises(ValueError) as error:
    next(iterator)
  assert str(error.value) == (
    f"seqio task '{name}' split 'validation': ValueError: {bad}:2: malformed JSON "
    "(Expecting value at column 10)"
  )


@needs_seqio
def test_importing_jaxlab_data_imports_neither_tensorflow_nor_seqio():
  """With both installed (as here), no jaxlab.data module imports them until data is read."""
  data_dir = os.path.join(REPO, "jaxlab", "data")
  modules = sorted(f"jaxlab.data.{f[:-3]}" for f in os.listdir(data_dir) if f.endswith(".py"))
  code = (
    f"import sys\nfor m in {modules!r}: __import__(m)\n"
    "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'seqio'}))"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "[]"


@needs_seqio
def test_launch_trains_on_a_seqio_task(tmp_path):
  """`python -m jaxlab.launch ... --config.data.kind=seqio`: a module registers the task (as a
  t5x user's MIXTURE_OR_TASK_MODULE does), and the run trains, evaluates and finishes (resuming
  the seqio iterator is test_resume_from_get_state_continues_identically)."""
  docs = corpus(200)
  write_jsonl(tmp_path / "train.jsonl", docs[:180])
  write_jsonl(tmp_path / "eval.jsonl", docs[180:])
  module = f"jaxlab_test_tasks_{uuid.uuid4().hex[:8]}"
  (tmp_path / f"{module}.py").write_text(
    "from jaxlab.data import seqio_tasks\n\n"
    f"seqio_tasks.register_jsonl_task('launch_docs', {str(tmp_path / 'train.jsonl')!r}, "
    f"{str(tmp_path / 'eval.jsonl')!r})\n"
  )
  workdir = tmp_path / "run"
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS="--xla_force_host_platform_device_count=8",
    PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
  )

  def launch(steps: int) -> subprocess.CompletedProcess:
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "jaxlab.launch",
        "--config",
        f"configs/smi_tiny.py:steps={steps}",
        "--workdir",
        str(workdir),
        "--config.data.kind=seqio",
        "--config.data.seqio_task=launch_docs",
        f"--config.data.seqio_modules={module}",
        "--config.train.log_every=2",
        "--config.train.eval_every=2",
        "--config.checkpoint.every=2",
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
    )

  result = launch(4)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows if "eval_loss" in row] == [2, 4]
  assert all(np.isfinite(row["loss"]) for row in rows if "loss" in row)
  config = json.loads((workdir / "config.json").read_text())
  assert config["data"]["kind"] == "seqio" and config["data"]["seqio_task"] == "launch_docs"
  assert json.loads((workdir / "summary.json").read_text())["step"] == 4
