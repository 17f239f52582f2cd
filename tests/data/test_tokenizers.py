"""Tokenizer round trips and config errors."""

import pickle

import ml_collections
import pytest

from jaxlab.data.tokenizers import (
  ByteTokenizer,
  HFTokenizer,
  SentencePieceTokenizer,
  Tokenizer,
  WordTokenizer,
  build_tokenizer,
)

from .helpers import corpus

TEXT = "Vinu sabuka lezu. Pigeba bari ke cuti."


def test_byte_tokenizer_round_trips_unicode_and_skips_specials():
  tokenizer = ByteTokenizer()
  text = "héllo, wörld ✓"
  ids = tokenizer.encode(text)
  assert isinstance(tokenizer, Tokenizer)
  assert (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (
    259,
    0,
    1,
    2,
  )
  assert ids[:2] == [ord("h") + 3, 0xC3 + 3]
  assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, 0, 0]) == text


def test_byte_tokenizer_replaces_invalid_utf8():
  assert ByteTokenizer().decode([0xFF + 3, ord("a") + 3]) == "\ufffda"


def test_sentencepiece_round_trip(sentencepiece_model):
  cfg = ml_collections.ConfigDict({"kind": "sentencepiece", "path": sentencepiece_model})
  tokenizer = build_tokenizer(cfg)
  assert isinstance(tokenizer, SentencePieceTokenizer)
  ids = tokenizer.encode(TEXT)
  assert tokenizer.bos_id not in ids and tokenizer.eos_id not in ids
  assert max(ids) < tokenizer.vocab_size == 200
  assert len({tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id}) == 3
  assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]) == TEXT
  assert pickle.loads(pickle.dumps(tokenizer)).encode(TEXT) == ids


def test_hf_round_trip_finds_special_tokens(hf_tokenizer_json):
  tokenizer = build_tokenizer(ml_collections.ConfigDict({"kind": "hf", "path": hf_tokenizer_json}))
  assert isinstance(tokenizer, HFTokenizer)
  assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2)
  for text in corpus(5) + ["héllo ✓"]:
    ids = tokenizer.encode(text)
    assert tokenizer.bos_id not in ids and tokenizer.eos_id not in ids
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]) == text
  assert pickle.loads(pickle.dumps(tokenizer)).encode(TEXT) == tokenizer.encode(TEXT)


def test_hf_special_tokens_from_config(hf_tokenizer_json):
  cfg = ml_collections.ConfigDict(
    {
      "kind": "hf",
      "path": hf_tokenizer_json,
      "bos_token": "</s>",
      "eos_token": "<s>",
      "pad_token": "<unk>",
    }
  )
  tokenizer = build_tokenizer(cfg)
  assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (2, 1, 3)
  with pytest.raises(ValueError, match="no BOS token"):
    HFTokenizer(hf_tokenizer_json, bos_token="<missing>")


def test_build_tokenizer_rejects_bad_kind_and_missing_file(tmp_path):
  with pytest.raises(ValueError, match="unknown tokenizer kind 'gpt'"):
    build_tokenizer(ml_collections.ConfigDict({"kind": "gpt", "path": ""}))
  missing = str(tmp_path / "nope.model")
  for kind in ("sentencepiece", "hf"):
    with pytest.raises(ValueError, match="file not found.*nope.model"):
      build_tokenizer(ml_collections.ConfigDict({"kind": kind, "path": missing}))


def test_byte_decode_ignores_ids_past_the_vocabulary():
  tokenizer = ByteTokenizer()
  ids = tokenizer.encode("hi") + [tokenizer.vocab_size, tokenizer.vocab_size + 4]
  assert tokenizer.decode(ids) == "hi"


def test_word_tokenizer_spends_one_token_per_listed_word_and_bytes_on_the_rest(tmp_path):
  words = ["get", "weather", "city", "Oslo"]
  tokenizer = WordTokenizer(words)
  assert isinstance(tokenizer, Tokenizer)
  assert tokenizer.vocab_size == 259 + 2 * len(words)
  word = {w: 259 + i for i, w in enumerate(words)}
  spaced = {w: 259 + len(words) + i for i, w in enumerate(words)}
  byte = lambda text: ByteTokenizer().encode(text)
  text = 'get_weather(city="Oslo") get_wether Oslo2 éOslo'
  ids = tokenizer.encode(text)
  assert ids == [
    word["get"],
    *byte("_"),
    word["weather"],
    *byte("("),
    word["city"],
    *byte('="'),
    word["Oslo"],
    *byte('")'),
    spaced["get"],
    *byte("_wether"),  # not listed: spelled in bytes
    spaced["Oslo"],
    *byte("2 é"),
    word["Oslo"],
  ]
  assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]) == text
  assert tokenizer.decode([tokenizer.vocab_size, *tokenizer.encode("city")]) == "city"
  # A word list written one per line builds the same tokenizer.
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(words) + "\n")
  built = build_tokenizer(ml_collections.ConfigDict({"kind": "words", "path": str(path)}))
  assert built.encode(text) == ids
  with pytest.raises(ValueError, match="ASCII letters only, got 'two words'"):
    WordTokenizer(["two words"])
  with pytest.raises(ValueError, match="distinct"):
    WordTokenizer(["a", "a"])
