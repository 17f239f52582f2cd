"""Session fixtures: tokenizer model files trained here from generated text."""

import io

import pytest

from .helpers import corpus


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory) -> str:
  import sentencepiece  # pylint: disable=g-import-not-at-top

  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus(300)),
    model_writer=model,
    vocab_size=200,
    model_type="bpe",
    character_coverage=1.0,
    pad_id=3,
    minloglevel=2,
  )
  path = tmp_path_factory.mktemp("spm") / "tiny.model"
  path.write_bytes(model.getvalue())
  return str(path)


@pytest.fixture(scope="session")
def hf_tokenizer_json(tmp_path_factory) -> str:
  # pylint: disable-next=g-import-not-at-top
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=400,
    special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(corpus(300), trainer=trainer)
  path = str(tmp_path_factory.mktemp("hf") / "tokenizer.json")
  tokenizer.save(path)
  return path
