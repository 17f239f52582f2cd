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
  assert ByteTokenizer().decode([3, 2, 258]) == "\x00\ufffd"  # byte 0, EOS, byte 255


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


def test_word_tokenizer_edges():
  tokenizer = WordTokenizer(["city"])
  assert tokenizer.words == ("city",)
  # A listed word inside a longer run of letters is not a token of its own.
  assert tokenizer.encode("xcity") == ByteTokenizer().encode("xcity")
  assert tokenizer.encode(" city") == [260]  # the spaced word's own token
  # Byte 0 is id 3, the first byte id, and decodes as such.
  assert tokenizer.encode("\x00") == [3] and tokenizer.decode([3, 259]) == "\x00city"
  assert tokenizer.decode([0xFF + 3, *tokenizer.encode("city")]) == "\ufffdcity"
  with pytest.raises(ValueError, match="^word tokenizer entries must be distinct$"):
    WordTokenizer(["a", "a"])


def test_word_tokenizer_dummy_prefix_gives_a_first_word_its_mid_text_token(tmp_path):
  plain, prefixed = WordTokenizer(["Oslo", "is"]), WordTokenizer(["Oslo", "is"], dummy_prefix=True)
  spaced_oslo = plain.encode(" Oslo")
  assert plain.encode("Oslo is") != spaced_oslo + plain.encode(" is")
  assert prefixed.encode("Oslo is") == spaced_oslo + plain.encode(" is")
  assert prefixed.decode(prefixed.encode("Oslo is")) == "Oslo is"
  assert prefixed.encode("(Oslo") == plain.encode("(Oslo")  # only a leading letter gets a space
  path = tmp_path / "vocab.txt"
  path.write_text("Oslo\nis\n")
  cfg = ml_collections.ConfigDict({"kind": "words", "path": str(path), "dummy_prefix": True})
  assert build_tokenizer(cfg).encode("Oslo") == spaced_oslo


class _FakeProcessor:
  """Stands in for sentencepiece.SentencePieceProcessor with chosen special ids."""

  ids = {}

  def __init__(self, model_proto):
    assert model_proto == b"model bytes"  # the file's contents, read through jaxlab.fileio

  def get_piece_size(self):
    return 50

  def __getattr__(self, name):  # bos_id, eos_id, pad_id, unk_id
    return lambda: self.ids[name.removesuffix("_id")]


@pytest.mark.parametrize(
  "ids, expected",
  [
    ({"bos": 0, "eos": 1, "pad": -1, "unk": 2}, (0, 1, 2)),  # no pad piece: pad with unk
    ({"bos": 1, "eos": 0, "pad": 2, "unk": 3}, (1, 0, 2)),
    ({"bos": 2, "eos": 1, "pad": 0, "unk": 3}, (2, 1, 0)),
    ({"bos": -1, "eos": 1, "pad": 2, "unk": 0}, None),
    ({"bos": 1, "eos": -1, "pad": 2, "unk": 0}, None),
  ],
)
def test_sentencepiece_special_ids(monkeypatch, tmp_path, ids, expected):
  import sentencepiece  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(sentencepiece, "SentencePieceProcessor", _FakeProcessor)
  monkeypatch.setattr(_FakeProcessor, "ids", ids)
  path = str(tmp_path / "fake.model")
  (tmp_path / "fake.model").write_bytes(b"model bytes")
  if expected is None:
    with pytest.raises(ValueError, match=f"^SentencePiece model {path} has no BOS/EOS piece$"):
      SentencePieceTokenizer(path)
  else:
    tokenizer = SentencePieceTokenizer(path)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == expected


def test_sentencepiece_pad_and_bad_file(sentencepiece_model, tmp_path):
  tokenizer = SentencePieceTokenizer(sentencepiece_model)
  assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, 3)
  ids = tokenizer.encode(TEXT)
  assert tokenizer.decode([*ids, tokenizer.vocab_size]) == TEXT  # ids past the vocab are skipped
  path = tmp_path / "bad.model"
  path.write_bytes(b"not a model")
  with pytest.raises(ValueError, match=r"bad.model: not a SentencePiece model \(sentencepiece"):
    SentencePieceTokenizer(str(path))


def _word_level_json(tmp_path, vocab, *, template=False, added=()):
  from tokenizers import Tokenizer, models, pre_tokenizers, processors

  tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
  if template:  # a post-processor that frames every encoding with <s> ... </s>
    tokenizer.post_processor = processors.TemplateProcessing(
      single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
  tokenizer.add_special_tokens(["<unk>"])
  tokenizer.add_tokens(list(added))
  path = str(tmp_path / f"word_level_{len(vocab)}_{template}_{len(added)}.json")
  tokenizer.save(path)
  return path


def test_hf_tokenizer_without_pad_token_pads_with_eos(tmp_path):
  vocab = {"<s>": 0, "</s>": 1, "a": 2, "<unk>": 3}
  tokenizer = HFTokenizer(_word_level_json(tmp_path, vocab, template=True, added=["<tool>"]))
  assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 1)
  assert tokenizer.vocab_size == 5  # the added <tool> counts
  assert tokenizer.encode("a a") == [2, 2]  # never the post-processor's <s> ... </s>
  # Specials other than pad/BOS/EOS (here <unk>) are decoded as written.
  assert tokenizer.decode([0, 2, 3, 4, 1, 1]) == "a <unk> <tool>"


def test_hf_errors_name_the_file_and_the_token(tmp_path, hf_tokenizer_json, monkeypatch):
  path = _word_level_json(tmp_path, {"</s>": 0, "a": 1, "<unk>": 2})
  tried = "<s>, <bos>, <|begin_of_text|>, <|startoftext|>, [CLS], <|endoftext|>"
  with pytest.raises(ValueError) as error:
    HFTokenizer(path)
  assert str(error.value) == f"HF tokenizer {path} has no BOS token (tried {tried})"
  for role, token in (("BOS", "bos_token"), ("EOS", "eos_token"), ("pad", "pad_token")):
    with pytest.raises(ValueError) as error:
      HFTokenizer(hf_tokenizer_json, **{token: "<missing>"})
    assert (
      str(error.value) == f"HF tokenizer {hf_tokenizer_json} has no {role} token (tried <missing>)"
    )
  import tokenizers  # pylint: disable=g-import-not-at-top

  bad = tmp_path / "bad.json"
  bad.write_text("not json")
  with pytest.raises(Exception) as raw:
    tokenizers.Tokenizer.from_str(bad.read_text())
  reason = str(raw.value).strip().splitlines()[0]
  with pytest.raises(ValueError) as error:
    HFTokenizer(str(bad))
  assert str(error.value) == f"{bad}: not a Hugging Face tokenizer.json ({reason})"

  class Silent:
    @staticmethod
    def from_str(text):
      raise Exception()  # pylint: disable=broad-exception-raised

  monkeypatch.setattr(tokenizers, "Tokenizer", Silent)
  with pytest.raises(ValueError) as error:
    HFTokenizer(str(bad))
  assert str(error.value) == f"{bad}: not a Hugging Face tokenizer.json (cannot parse it)"


def test_build_tokenizer_kinds_and_messages(tmp_path):
  assert isinstance(build_tokenizer(ml_collections.ConfigDict({"kind": "byte"})), ByteTokenizer)
  with pytest.raises(ValueError) as error:
    build_tokenizer(ml_collections.ConfigDict({"kind": "gpt"}))
  assert str(error.value).endswith("; expected one of byte, words, sentencepiece, hf")
  with pytest.raises(ValueError) as error:
    build_tokenizer(ml_collections.ConfigDict({"kind": "hf"}))
  assert str(error.value) == "hf tokenizer file not found: ''"
