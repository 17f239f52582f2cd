"""End-to-end LM iterator: shapes, determinism, resume, sharding, splits."""

import json

import numpy as np
import pytest

from jaxlab.data.pipeline import build_lm_iterator, default_data_config
from jaxlab.data.tokenizers import build_tokenizer

from .helpers import (
  assert_batches_equal,
  data_config,
  documents_in,
  numbered_docs,
  take,
  texts,
  write_jsonl,
)

SEQ_LEN = 16  # One numbered document per packed row.
PACKING_ROWS = (
  64  # Rows packed (and shuffled) together: a train epoch of 64 documents is one group.
)


def synthetic_iterator(seed: int = 0):
  cfg = data_config(synthetic_num_docs=400)
  return build_lm_iterator(cfg, seq_len=64, global_batch=4, split="train", seed=seed)


@pytest.fixture
def numbered_files(tmp_path):
  """64 train and 8 eval numbered documents in JSONL files."""
  train = numbered_docs(32), numbered_docs(32, start=32)
  write_jsonl(tmp_path / "train-0.jsonl", train[0])
  write_jsonl(tmp_path / "train-1.jsonl", train[1])
  write_jsonl(tmp_path / "eval.jsonl", numbered_docs(8, start=100))
  return data_config(
    kind="jsonl", train_files=f"{tmp_path}/train-*.jsonl", eval_files=f"{tmp_path}/eval.jsonl"
  )


def test_default_config_fields():
  cfg = default_data_config()
  assert cfg.kind == "synthetic" and cfg.tokenizer.kind == "byte" and cfg.eval_fraction == 0.05
  assert (cfg.train_files, cfg.eval_files, cfg.text_field) == ("", "", "text")
  assert (cfg.shuffle, cfg.worker_count, cfg.eval_batches) == (True, 0, 0)


def test_batch_shapes_and_dtypes():
  batch = next(synthetic_iterator())
  int_fields = ("inputs", "targets", "segment_ids", "positions")
  assert set(batch) == {*int_fields, "loss_weights"}
  assert all(batch[name].shape == (4, 64) and batch[name].dtype == np.int32 for name in int_fields)
  assert batch["loss_weights"].shape == (4, 64) and batch["loss_weights"].dtype == np.float32
  assert batch["loss_weights"].sum() > 0.8 * batch["loss_weights"].size


def test_same_seed_same_batches_other_seed_differs():
  batches = take(synthetic_iterator(seed=3), 5)
  assert_batches_equal(take(synthetic_iterator(seed=3), 5), batches)
  other = take(synthetic_iterator(seed=4), 5)
  assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(batches, other))


def test_state_restore_resumes_bitwise():
  iterator = synthetic_iterator(seed=7)
  take(iterator, 13)
  state = json.loads(json.dumps(iterator.get_state()))
  expected = take(iterator, 6)
  resumed = synthetic_iterator(seed=7)
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 6), expected)


def test_state_restore_with_worker_processes():
  cfg = data_config(synthetic_num_docs=400, worker_count=1)
  build = lambda: build_lm_iterator(cfg, seq_len=64, global_batch=4, split="train", seed=7)
  iterator = build()
  take(iterator, 5)
  state = json.loads(json.dumps(iterator.get_state()))
  expected = take(iterator, 3)
  iterator.close()
  resumed = build()
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 3), expected)
  resumed.close()


def test_train_repeats_epochs_with_a_new_order_each_epoch(numbered_files):
  iterator = build_lm_iterator(
    numbered_files, seq_len=SEQ_LEN, global_batch=4, split="train", seed=0
  )
  epochs = [texts(take(iterator, 16)) for _ in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == numbered_docs(PACKING_ROWS)
  assert len({tuple(epoch) for epoch in epochs}) == 3


def test_hosts_read_disjoint_shards(numbered_files):
  seen = []
  for process_index in range(2):
    iterator = build_lm_iterator(
      numbered_files,
      seq_len=SEQ_LEN,
      global_batch=4,
      split="train",
      seed=0,
      process_index=process_index,
      process_count=2,
    )
    batches = take(
      iterator, PACKING_ROWS // 2
    )  # Two epochs of this host's 32 documents, 2 per batch.
    assert all(batch["inputs"].shape == (2, SEQ_LEN) for batch in batches)
    seen.append(set(texts(batches)))
  assert len(seen[0]) == len(seen[1]) == 32
  assert not seen[0] & seen[1]
  assert sorted(seen[0] | seen[1]) == numbered_docs(64)


def test_eval_files_one_pass_padded_then_stops(numbered_files):
  batches = list(
    build_lm_iterator(numbered_files, seq_len=SEQ_LEN, global_batch=3, split="eval", seed=0)
  )
  assert len(batches) == 3  # 8 documents, 3 rows per batch: the last batch has one padding row.
  assert texts(batches) == numbered_docs(8, start=100)
  last = batches[-1]
  assert last["inputs"].shape == (3, SEQ_LEN)
  assert not last["segment_ids"][2].any() and not last["loss_weights"][2].any()
  again = list(
    build_lm_iterator(numbered_files, seq_len=SEQ_LEN, global_batch=3, split="eval", seed=5)
  )
  assert_batches_equal(again, batches)


def test_eval_batches_fixes_the_batch_count(numbered_files):
  numbered_files.eval_batches = 7
  batches = list(
    build_lm_iterator(
      numbered_files,
      seq_len=SEQ_LEN,
      global_batch=2,
      split="eval",
      seed=0,
      process_index=1,
      process_count=2,
    )
  )
  assert len(batches) == 7 and all(batch["inputs"].shape == (1, SEQ_LEN) for batch in batches)


def test_holdout_eval_is_disjoint_from_train(tmp_path):
  write_jsonl(tmp_path / "all.jsonl", numbered_docs(40))
  cfg = data_config(kind="jsonl", train_files=str(tmp_path / "all.jsonl"), eval_fraction=0.25)
  train = build_lm_iterator(cfg, seq_len=SEQ_LEN, global_batch=2, split="train", seed=0)
  # 64 rows: two epochs and more of the 30 train documents.
  train_docs = set(texts(take(train, PACKING_ROWS // 2)))
  eval_docs = texts(build_lm_iterator(cfg, seq_len=SEQ_LEN, global_batch=2, split="eval", seed=1))
  assert len(train_docs) == 30 and len(eval_docs) == 10
  assert not train_docs & set(eval_docs)
  assert sorted(train_docs | set(eval_docs)) == numbered_docs(40)


def test_hf_tokenizer_pipeline_round_trips_documents(tmp_path, hf_tokenizer_json):
  docs = ["alpha beta.", "gamma delta epsilon.", "zeta."]
  write_jsonl(tmp_path / "docs.jsonl", docs)
  cfg = data_config(
    kind="jsonl", train_files=str(tmp_path / "docs.jsonl"), eval_files=str(tmp_path / "docs.jsonl")
  )
  cfg.tokenizer.kind, cfg.tokenizer.path = "hf", hf_tokenizer_json
  batches = list(build_lm_iterator(cfg, seq_len=32, global_batch=2, split="eval", seed=0))
  tokenizer = build_tokenizer(cfg.tokenizer)
  assert sorted(doc for batch in batches for doc in documents_in(batch, tokenizer)) == sorted(docs)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(global_batch=6, process_count=4), "not a positive multiple of process_count"),
    (dict(global_batch=4, process_index=2, process_count=2), "process_index 2 not in"),
    (dict(global_batch=4, split="test"), "unknown split 'test'"),
  ],
)
def test_invalid_arguments(kwargs, message):
  args = dict(seq_len=16, split="train", seed=0) | kwargs
  with pytest.raises(ValueError, match=message):
    build_lm_iterator(default_data_config(), **args)
