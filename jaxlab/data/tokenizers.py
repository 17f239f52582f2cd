"""Tokenizers behind one small protocol, so the pipeline never cares which is used.

`encode` never adds BOS/EOS (packing adds them per document) and `decode` drops
pad/BOS/EOS so decoded samples read as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import ml_collections

from jaxlab import fileio

TOKENIZER_KINDS = ("byte", "words", "sentencepiece", "hf")

# Special-token spellings tried, in order, when an HF tokenizer.json is loaded
# without explicit token names in the config.
_HF_BOS_CANDIDATES = (
  "<s>",
  "<bos>",
  "<|begin_of_text|>",
  "<|startoftext|>",
  "[CLS]",
  "<|endoftext|>",
)
_HF_EOS_CANDIDATES = ("</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "<|eot_id|>", "[SEP]")
_HF_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>")


@runtime_checkable
class Tokenizer(Protocol):
  """What the data pipeline and samplers need from a tokenizer."""

  vocab_size: int
  bos_id: int
  eos_id: int
  pad_id: int

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS."""
    ...

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`, skipping pad/BOS/EOS and ids past the vocabulary (a model whose vocab is
    padded beyond the tokenizer's can sample those)."""
    ...


class ByteTokenizer:
  """UTF-8 bytes as tokens (byte b -> id b + 3); needs no files."""

  pad_id = 0
  bos_id = 1
  eos_id = 2
  _OFFSET = 3
  vocab_size = 256 + _OFFSET

  def encode(self, text: str) -> list[int]:
    return [b + self._OFFSET for b in text.encode("utf-8")]

  def decode(self, ids: Sequence[int]) -> str:
    data = bytes(int(i) - self._OFFSET for i in ids if self._OFFSET <= int(i) < self.vocab_size)
    return data.decode("utf-8", errors="replace")


_WORD_PIECE = re.compile(r" ?[A-Za-z]+|[^A-Za-z]")


class WordTokenizer:
  """Bytes plus a fixed word list: a listed word, alone or with one leading space, is one
  token; any other text is its UTF-8 bytes (ids as in ByteTokenizer, words after them).

  For generated tasks whose vocabulary is known: sequences are a few times shorter than bytes
  and a value is copied as one token, while names outside the list (a task's noisy names)
  still spell out byte by byte. Token boundaries are character boundaries, so
  decode(encode(text)) == text and decoded prefix lengths locate characters exactly.

  With `dummy_prefix` (SentencePiece's add_dummy_prefix), a text that starts with a letter is
  encoded as if a space preceded it and decode drops one leading space: a word at the start of
  a prompt is then the same token as inside a document, not a form seen only at document starts.
  """

  pad_id = ByteTokenizer.pad_id
  bos_id = ByteTokenizer.bos_id
  eos_id = ByteTokenizer.eos_id

  def __init__(self, words: Sequence[str], dummy_prefix: bool = False):
    words = tuple(words)
    bad = next((w for w in words if not re.fullmatch(r"[A-Za-z]+", w)), None)
    if bad is not None:
      raise ValueError(f"word tokenizer entries must be ASCII letters only, got {bad!r}")
    if len(set(words)) != len(words):
      raise ValueError("word tokenizer entries must be distinct")
    self.words = words
    self.dummy_prefix = dummy_prefix
    pieces = [*words, *(" " + w for w in words)]
    first = ByteTokenizer.vocab_size
    self._ids = {piece: first + i for i, piece in enumerate(pieces)}
    self._pieces = [piece.encode("ascii") for piece in pieces]
    self.vocab_size = first + len(pieces)

  @classmethod
  def from_file(cls, path: str, dummy_prefix: bool = False) -> WordTokenizer:
    """The word list of a text file, one word per line."""
    with fileio.open_file(path) as f:
      return cls([line.strip() for line in f if line.strip()], dummy_prefix=dummy_prefix)

  def encode(self, text: str) -> list[int]:
    if self.dummy_prefix and text[:1].isalpha():
      text = " " + text
    ids: list[int] = []
    for match in _WORD_PIECE.finditer(text):
      piece = match.group()
      if piece in self._ids:  # a listed word, or " " + a listed word
        ids.append(self._ids[piece])
      else:
        ids += ByteTokenizer().encode(piece)
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    data = bytearray()
    first = ByteTokenizer.vocab_size
    for i in (int(i) for i in ids):
      if ByteTokenizer._OFFSET <= i < first:
        data.append(i - ByteTokenizer._OFFSET)
      elif first <= i < self.vocab_size:
        data += self._pieces[i - first]
    text = data.decode("utf-8", errors="replace")
    return text[1:] if self.dummy_prefix and text.startswith(" ") else text


class SentencePieceTokenizer:
  """A trained SentencePiece `.model` file.

  Models trained without a pad piece (SentencePiece's default) pad with the
  unknown id, which is never a target because padding has zero loss weight.
  """

  def __init__(self, path: str):
    self._path = path
    self._load()

  def _load(self) -> None:
    import sentencepiece  # pylint: disable=g-import-not-at-top

    try:
      self._processor = sentencepiece.SentencePieceProcessor(
        model_proto=fileio.read_bytes(self._path)
      )
    except (RuntimeError, OSError):  # "INTERNAL: could not parse ModelProto from PATH", ...
      raise ValueError(
        f"{self._path}: not a SentencePiece model (sentencepiece cannot parse it)"
      ) from None
    self.vocab_size = int(self._processor.get_piece_size())
    self.bos_id = int(self._processor.bos_id())
    self.eos_id = int(self._processor.eos_id())
    if self.bos_id < 0 or self.eos_id < 0:
      raise ValueError(f"SentencePiece model {self._path} has no BOS/EOS piece")
    pad_id = int(self._processor.pad_id())
    self.pad_id = pad_id if pad_id >= 0 else int(self._processor.unk_id())

  def __getstate__(self) -> dict[str, str]:
    # The native processor is not picklable; grain worker processes reload it.
    return {"path": self._path}

  def __setstate__(self, state: dict[str, str]) -> None:
    self._path = state["path"]
    self._load()

  def encode(self, text: str) -> list[int]:
    return list(self._processor.encode(text))

  def decode(self, ids: Sequence[int]) -> str:
    special = {self.pad_id, self.bos_id, self.eos_id}
    return self._processor.decode(
      [int(i) for i in ids if int(i) not in special and int(i) < self.vocab_size]
    )


class HFTokenizer:
  """A Hugging Face `tokenizer.json` loaded with the `tokenizers` library.

  BOS/EOS/pad are the named tokens if given, else the first common spelling
  present in the vocabulary; pad falls back to EOS.
  """

  def __init__(
    self,
    path: str,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    pad_token: str | None = None,
  ):
    import tokenizers  # pylint: disable=g-import-not-at-top

    try:
      self._tokenizer = tokenizers.Tokenizer.from_str(fileio.read_text(path))
    except Exception as e:  # the library raises plain Exception for unparsable files
      reason = (str(e).strip().splitlines() or ["cannot parse it"])[0]
      raise ValueError(f"{path}: not a Hugging Face tokenizer.json ({reason})") from None
    self.vocab_size = int(self._tokenizer.get_vocab_size(with_added_tokens=True))
    self.bos_id = self._token_id(path, "BOS", bos_token, _HF_BOS_CANDIDATES)
    self.eos_id = self._token_id(path, "EOS", eos_token, _HF_EOS_CANDIDATES)
    if pad_token or any(self._tokenizer.token_to_id(t) is not None for t in _HF_PAD_CANDIDATES):
      self.pad_id = self._token_id(path, "pad", pad_token, _HF_PAD_CANDIDATES)
    else:
      self.pad_id = self.eos_id

  def _token_id(self, path: str, role: str, token: str | None, candidates: Sequence[str]) -> int:
    for name in [token] if token else candidates:
      token_id = self._tokenizer.token_to_id(name)
      if token_id is not None:
        return int(token_id)
    tried = token or ", ".join(candidates)
    raise ValueError(f"HF tokenizer {path} has no {role} token (tried {tried})")

  def encode(self, text: str) -> list[int]:
    return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

  def decode(self, ids: Sequence[int]) -> str:
    special = {self.pad_id, self.bos_id, self.eos_id}
    kept = [int(i) for i in ids if int(i) not in special and int(i) < self.vocab_size]
    return self._tokenizer.decode(kept, skip_special_tokens=False)


def build_tokenizer(cfg: ml_collections.ConfigDict) -> Tokenizer:
  """Tokenizer named by `cfg.kind` ("byte", "words", "sentencepiece", "hf") and `cfg.path`
  ("words": a word list, one per line; optional `cfg.dummy_prefix`, see WordTokenizer).

  For "hf", optional `cfg.bos_token` / `eos_token` / `pad_token` name the
  special tokens (empty means look up common spellings).
  """
  kind = cfg.kind
  if kind not in TOKENIZER_KINDS:
    raise ValueError(
      f"unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}"
    )
  if kind == "byte":
    return ByteTokenizer()
  path = cfg.get("path", "")
  if not path or not fileio.isfile(path):
    raise ValueError(f"{kind} tokenizer file not found: {path!r}")
  if kind == "words":
    return WordTokenizer.from_file(path, dummy_prefix=bool(cfg.get("dummy_prefix", False)))
  if kind == "sentencepiece":
    return SentencePieceTokenizer(path)
  return HFTokenizer(
    path,
    bos_token=cfg.get("bos_token") or None,
    eos_token=cfg.get("eos_token") or None,
    pad_token=cfg.get("pad_token") or None,
  )
