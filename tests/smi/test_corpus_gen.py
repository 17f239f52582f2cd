import re

import numpy as np
import pytest

from jaxlab.data.tokenizers import WordTokenizer
from jaxlab.smi import corpus_gen
from jaxlab.smi.corpus_gen import FACTOR_FIELDS, RELATIONS, CorpusSpec, generate, invent_names
from jaxlab.smi.count import count_triples_naive
from jaxlab.smi.triples import Triple

SPEC = CorpusSpec(num_facts=120, seed=3)


@pytest.fixture(scope="module")
def corpus():
  return generate(SPEC)


@pytest.fixture(scope="module")
def large():
  """The study's default corpus: 1,000 facts."""
  return generate(CorpusSpec())


def test_names_are_prefix_free_so_substring_matches_are_exact():
  names = invent_names(300, np.random.RandomState(0))
  assert len(set(names)) == 300
  for a in names:
    assert not any(b != a and b.startswith(a) for b in names)


def test_generation_is_deterministic_and_seeded(corpus):
  assert generate(SPEC) == corpus
  assert generate(CorpusSpec(num_facts=120, seed=4)).documents != corpus.documents


def test_objects_come_from_small_pools_shared_by_many_facts(corpus):
  by_relation = {}
  for fact in corpus.facts:
    by_relation.setdefault(fact["rel"], set()).update((fact["obj"], fact["competitor"]))
    assert fact["competitor"] != fact["obj"]
  assert len(by_relation) == SPEC.num_relations
  assert all(len(objects) <= SPEC.objects_per_relation for objects in by_relation.values())
  assert len({f["obj"] for f in corpus.facts}) <= SPEC.num_relations * SPEC.objects_per_relation
  assert len({f["subj"] for f in corpus.facts}) == SPEC.num_facts


def _statement_docs(documents, rel, subj, obj):
  forms = [t.replace("[S]", subj).replace("[O]", obj) for t in RELATIONS[rel][0]]
  return {i for i, d in enumerate(documents) if any(form in d for form in forms)}


def test_factors_are_what_the_documents_hold(corpus):
  """Each factor recounted from the text: statements by their surface forms, the rest from the
  reference counter's N_s, N_o and N_so."""
  triples = [Triple(f["subj"], f["rel"], f["obj"]) for f in corpus.facts]
  counts = count_triples_naive(triples, corpus.documents)
  for fact, row in zip(corpus.facts, counts):
    stating = _statement_docs(corpus.documents, fact["rel"], fact["subj"], fact["obj"])
    competing = _statement_docs(corpus.documents, fact["rel"], fact["subj"], fact["competitor"])
    with_obj = {i for i, d in enumerate(corpus.documents) if " " + fact["obj"] in d}
    assert fact["true_docs"] == len(stating) >= 1
    assert fact["competing_docs"] == len(competing)
    assert fact["chance_docs"] == row["n_both"] - fact["true_docs"]
    assert fact["object_popularity"] == row["n_obj"] - row["n_both"]
    assert fact["subject_popularity"] == row["n_subj"] - row["n_both"] - len(competing - with_obj)


def test_factors_vary_widely_and_independently(large):
  values = np.array([[f[k] for k in FACTOR_FIELDS] for f in large.facts], float)
  assert len(values) == 1000
  low, high = values.min(axis=0), values.max(axis=0)
  factor = dict(zip(FACTOR_FIELDS, zip(low, high)))
  assert factor["true_docs"][0] == 1 and factor["true_docs"][1] >= 24
  assert factor["chance_docs"][0] == 0 and factor["chance_docs"][1] >= 12
  assert factor["competing_docs"][0] == 0 and factor["competing_docs"][1] >= 6
  assert factor["object_popularity"][1] >= 8 * factor["object_popularity"][0]
  correlations = np.corrcoef(np.log2(1 + values).T)
  off_diagonal = correlations[~np.eye(len(FACTOR_FIELDS), dtype=bool)]
  assert np.abs(off_diagonal).max() < 0.1, np.round(correlations, 3)


def test_documents_are_long_and_chance_meetings_are_common(large):
  sentences = [len(re.findall(r"[.]", d)) for d in large.documents]
  assert np.median(sentences) >= 7
  chance = np.array([f["chance_docs"] for f in large.facts])
  assert (chance > 0).mean() > 0.5


def test_every_word_is_one_token_and_text_round_trips(corpus):
  tokenizer = WordTokenizer(corpus_gen.vocabulary(corpus))
  document = corpus.documents[0]
  ids = tokenizer.encode(document)
  assert tokenizer.decode(ids) == document
  assert all(i >= 259 or chr(i - 3) in " .," for i in ids)  # only punctuation stays as bytes
  assert len(ids) < len(document) / 4


def test_templates_cover_every_relation_and_hold_out_paraphrases(corpus):
  text = " ".join(corpus.documents)
  for rel in {f["rel"] for f in corpus.facts}:
    assert all("[S]" in t for t in corpus.templates[rel])
    longest_part = max(corpus.templates[rel][-1].split("[S]"), key=len).strip()
    assert longest_part not in text  # the held-out paraphrase never appears in training text
    assert corpus.templates[rel][0].split("[S]")[1].strip() in text  # the training form does


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("num_relations", 13, "num_relations must be in [1, 12]"),
    ("objects_per_relation", 1, "objects_per_relation must be at least 2"),
    ("num_facts", 0, "num_facts must be positive"),
  ],
)
def test_impossible_specs_are_refused(field, value, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    generate(CorpusSpec(**{field: value}))


def test_written_files_hold_the_corpus(tmp_path):
  spec = CorpusSpec(num_facts=24, seed=1)
  paths = corpus_gen.write_corpus(spec, str(tmp_path), eval_docs=5)
  corpus = generate(spec)
  assert (tmp_path / "words.txt").read_text().split() == corpus_gen.vocabulary(corpus)
  assert len((tmp_path / "eval_corpus.jsonl").read_text().splitlines()) == 5
  assert len((tmp_path / "factors.jsonl").read_text().splitlines()) == 24
  assert set(paths) == {
    "corpus.jsonl",
    "triples.jsonl",
    "factors.jsonl",
    "words.txt",
    "templates.json",
    "eval_corpus.jsonl",
  }
