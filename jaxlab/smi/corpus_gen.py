"""Synthetic knowledge corpus for small-scale SMI studies (docs/smi.md section 7).

Per fact (subject, relation, object) the generator draws four factors independently: how many
documents state it (`true_docs`), in how many other documents its subject and object meet by
chance in unrelated sentences (`chance_docs`), how many documents state the same subject and
relation with a competing object (`competing_docs`), and, through the object it draws, the
object's popularity. Objects come from a small pool per relation, so many facts share one (as
many people share one country), and objects and subjects have Zipf-distributed background
mentions. Documents are long and multi-sentence, so popular names also meet by accident. The
corpus statistics (N_s, N_o, N_so) are thereby functions of several factors, and which of them a
trained model's recall follows is for the model to decide. The realized factors are returned per
fact (`FACTOR_FIELDS`).

Names form a prefix-free set of letter-only words, so the counting rule's substring test
(" " + name) never matches the wrong entity and a word tokenizer holds each name as one token.
Relations have training surface templates (how facts appear in the corpus) and held-out cloze
templates (paraphrases used only for evaluation).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from jaxlab.fileio import write_jsonl_atomic, write_text_atomic

SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")

# relation -> (training templates with [S] and [O], held-out cloze templates ending before [O]).
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
  "capital": (
    ("[S] is the capital of [O].", "The city of [S] is the capital of [O]."),
    ("As a capital, [S] belongs to",),
  ),
  "born": (
    ("[S] was born in [O].", "Records say [S] was born in [O]."),
    ("The birthplace of [S] is",),
  ),
  "citizen": (
    ("[S] is a citizen of [O].", "By law, [S] is a citizen of [O]."),
    ("[S] holds citizenship of",),
  ),
  "occupation": (
    ("[S] works as a [O].", "By trade, [S] works as a [O]."),
    ("The profession of [S] is",),
  ),
  "located": (
    ("[S] is located in [O].", "On the map, [S] is located in [O]."),
    ("You can find [S] in",),
  ),
  "founded": (
    ("[S] was founded by [O].", "History says [S] was founded by [O]."),
    ("The founder of [S] is",),
  ),
  "plays": (
    ("[S] plays the [O].", "On stage, [S] plays the [O]."),
    ("The instrument of [S] is the",),
  ),
  "headquarters": (
    ("[S] has its headquarters in [O].", "The company [S] has its headquarters in [O]."),
    ("The head office of [S] is in",),
  ),
  "died": (("[S] died in [O].", "Sadly, [S] died in [O]."), ("The place of death of [S] is",)),
  "language": (("[S] speaks [O].", "At home, [S] speaks [O]."), ("The native language of [S] is",)),
  "works_for": (
    ("[S] works for [O].", "Every day, [S] works for [O]."),
    ("The employer of [S] is",),
  ),
  "created": (
    ("[S] was created by [O].", "Long ago, [S] was created by [O]."),
    ("The creator of [S] is",),
  ),
}
MENTION_TEMPLATES = (
  "Yesterday [X] was in the news.",
  "Many people talk about [X].",
  "A story about [X] was told again.",
  "Nobody forgets [X].",
  "There is a song that mentions [X].",
  "The old book lists [X].",
)
FILLER = (
  "The weather was mild.",
  "A bird sang outside.",
  "The market opened early.",
  "Some rain fell in the night.",
  "The road was long and quiet.",
)
# Per-fact factors, as realized in the generated documents.
FACTOR_FIELDS = (
  "true_docs",  # documents stating the fact
  "chance_docs",  # other documents mentioning both subject and object
  "competing_docs",  # documents stating the subject and relation with the competing object
  "object_popularity",  # documents mentioning the object but not the subject
  "subject_popularity",  # documents mentioning the subject but not the object, competing
  # statements left out
)


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  """Corpus shape and the log2 ranges each factor is drawn from (floor(2**u), u uniform)."""

  num_facts: int = 1000
  num_relations: int = 12
  objects_per_relation: int = 8  # the pool a relation's objects come from
  log2_true_docs: tuple[float, float] = (0.0, 6.0)
  log2_chance_docs: tuple[float, float] = (-1.0, 4.0)  # below 0 -> often none
  log2_competing_docs: tuple[float, float] = (-1.0, 3.0)
  # Zipf background mentions: the entity of popularity rank r gets floor(top / r) documents.
  object_mentions_top: int = 400
  subject_mentions_top: int = 32
  sentences_per_doc: tuple[int, int] = (6, 12)
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Generated documents, facts (with their factors) and cloze templates per relation."""

  documents: list[str]
  facts: list[dict]
  templates: dict[str, list[str]]

  @property
  def triples(self) -> list[dict]:
    """The facts as plain triples {subj, rel, obj, idx}."""
    return [{k: f[k] for k in ("subj", "rel", "obj", "idx")} for f in self.facts]


def invent_names(count: int, rng: np.random.RandomState) -> list[str]:
  """`count` distinct capitalized names of 2-3 syllables, none a prefix of another."""
  names: set[str] = set()
  while len(names) < count:
    word = "".join(rng.choice(SYLLABLES, size=rng.randint(2, 4)))
    candidate = word.capitalize()
    if not any(n.startswith(candidate) or candidate.startswith(n) for n in names):
      names.add(candidate)
  return sorted(names, key=lambda n: rng.rand())


def _log_uniform_counts(rng: np.random.RandomState, bounds: tuple[float, float], n: int):
  return np.floor(2.0 ** rng.uniform(*bounds, size=n)).astype(int)


def _zipf_counts(rng: np.random.RandomState, n: int, top: int) -> np.ndarray:
  """floor(top / rank) with the ranks 1..n in random order."""
  return top // (rng.permutation(n) + 1)


def check_spec(spec: CorpusSpec) -> None:
  """Raises ValueError for a spec the generator cannot honour."""
  if not 1 <= spec.num_relations <= len(RELATIONS):
    raise ValueError(f"num_relations must be in [1, {len(RELATIONS)}], got {spec.num_relations}")
  if spec.objects_per_relation < 2:
    raise ValueError("objects_per_relation must be at least 2 (a competitor needs another)")
  if spec.num_facts < 1:
    raise ValueError(f"num_facts must be positive, got {spec.num_facts}")


class _Documents:
  """Sentences per document plus which names each document mentions, filled fact by fact."""

  def __init__(self, num_docs: int, rng: np.random.RandomState):
    self.sentences: list[list[str]] = [[] for _ in range(num_docs)]
    self.mentions: dict[str, set[int]] = {}
    self.rng = rng

  def add(self, doc: int, sentence: str, *names: str) -> None:
    self.sentences[doc].append(sentence)
    for name in names:
      self.mentions.setdefault(name, set()).add(int(doc))

  def pick(self, count: int, exclude: set[int]) -> list[int]:
    """`count` distinct documents outside `exclude`."""
    if count > len(self.sentences) - len(exclude):
      raise ValueError(f"cannot place {count} mentions in {len(self.sentences)} documents")
    chosen: set[int] = set()
    while len(chosen) < count:
      doc = int(self.rng.randint(len(self.sentences)))
      if doc not in exclude:
        chosen.add(doc)
    return sorted(chosen)

  def mention(self, doc: int, name: str) -> None:
    template = MENTION_TEMPLATES[self.rng.randint(len(MENTION_TEMPLATES))]
    self.add(doc, template.replace("[X]", name), name)


def _statement(rng: np.random.RandomState, rel: str, subj: str, obj: str) -> str:
  templates = RELATIONS[rel][0]
  return templates[rng.randint(len(templates))].replace("[S]", subj).replace("[O]", obj)


def generate(spec: CorpusSpec) -> Corpus:
  """The corpus of `spec`: documents, facts with their realized factors, cloze templates."""
  check_spec(spec)
  rng = np.random.RandomState(spec.seed)
  relations = list(RELATIONS)[: spec.num_relations]
  names = invent_names(spec.num_facts + spec.num_relations * spec.objects_per_relation, rng)
  subjects, objects = names[: spec.num_facts], names[spec.num_facts :]
  pools = {
    rel: objects[i * spec.objects_per_relation : (i + 1) * spec.objects_per_relation]
    for i, rel in enumerate(relations)
  }
  n = spec.num_facts
  true_docs = _log_uniform_counts(rng, spec.log2_true_docs, n)
  true_docs = np.maximum(true_docs, 1)
  chance_docs = _log_uniform_counts(rng, spec.log2_chance_docs, n)
  competing_docs = _log_uniform_counts(rng, spec.log2_competing_docs, n)
  facts = []
  for i, subj in enumerate(subjects):
    rel = relations[i % len(relations)]
    obj, competitor = rng.choice(pools[rel], size=2, replace=False)
    facts.append(
      {"subj": subj, "rel": rel, "obj": str(obj), "idx": i, "competitor": str(competitor)}
    )
  object_mentions = dict(zip(objects, _zipf_counts(rng, len(objects), spec.object_mentions_top)))
  subject_mentions = _zipf_counts(rng, n, spec.subject_mentions_top)
  planned = (
    true_docs.sum()
    + competing_docs.sum()
    + 2 * chance_docs.sum()
    + subject_mentions.sum()
    + sum(object_mentions.values())
  )
  mean_length = sum(spec.sentences_per_doc) / 2
  # Enough documents for every draw of distinct ones: a fact's statements, competitors and
  # chance meetings never share one, and the most popular name fits too.
  num_docs = max(
    int(np.ceil(planned / mean_length)),
    int(true_docs.max() + competing_docs.max() + chance_docs.max()),
    spec.object_mentions_top,
    spec.subject_mentions_top,
  )
  docs = _Documents(num_docs, rng)
  competing_sets = []  # per fact: the documents stating its competitor
  for fact, t, c, k in zip(facts, true_docs, chance_docs, competing_docs):
    subj, rel, obj = fact["subj"], fact["rel"], fact["obj"]
    stating = docs.pick(int(t), set())
    for doc in stating:
      docs.add(doc, _statement(rng, rel, subj, obj), subj, obj)
    competing = docs.pick(int(k), set(stating))
    for doc in competing:
      docs.add(doc, _statement(rng, rel, subj, fact["competitor"]), subj, fact["competitor"])
    meeting = docs.pick(int(c), set(stating))
    for doc in meeting:
      docs.mention(doc, subj)
      docs.mention(doc, obj)
    competing_sets.append(set(competing))
  for subj, count in zip(subjects, subject_mentions):
    for doc in docs.pick(int(count), set()):
      docs.mention(doc, subj)
  for obj, count in object_mentions.items():
    for doc in docs.pick(int(count), set()):
      docs.mention(doc, obj)
  for fact, competing in zip(facts, competing_sets):
    subj_docs, obj_docs = docs.mentions[fact["subj"]], docs.mentions[fact["obj"]]
    stated = int(true_docs[fact["idx"]])
    fact.update(
      true_docs=stated,
      chance_docs=len(subj_docs & obj_docs) - stated,
      competing_docs=len(competing),
      object_popularity=len(obj_docs - subj_docs),
      subject_popularity=len(subj_docs - obj_docs - competing),
    )
  documents = [_assemble(sentences, spec, rng) for sentences in docs.sentences]
  return Corpus(documents, facts, {rel: _cloze_templates(rel) for rel in relations})


def _assemble(sentences: list[str], spec: CorpusSpec, rng: np.random.RandomState) -> str:
  """One document: its sentences topped up with filler to the drawn length, shuffled, and a
  filler sentence first (the counting rule needs a space before a name, so a name opening a
  document would silently go uncounted)."""
  low, high = spec.sentences_per_doc
  target = rng.randint(low, high + 1)
  sentences = sentences + [FILLER[rng.randint(len(FILLER))] for _ in range(target - len(sentences))]
  rng.shuffle(sentences)
  return " ".join([FILLER[rng.randint(len(FILLER))]] + sentences)


def heldout_documents(spec: CorpusSpec, corpus: Corpus, num_docs: int) -> list[str]:
  """Documents for an eval loss: the corpus's facts, competitors and mentions in new documents."""
  rng = np.random.RandomState(spec.seed + 7919)
  documents = []
  for _ in range(num_docs):
    sentences = []
    for fact in (corpus.facts[i] for i in rng.randint(len(corpus.facts), size=4)):
      sentences.append(_statement(rng, fact["rel"], fact["subj"], fact["obj"]))
      name = fact["obj"] if rng.rand() < 0.5 else fact["subj"]
      sentences.append(MENTION_TEMPLATES[rng.randint(len(MENTION_TEMPLATES))].replace("[X]", name))
    documents.append(_assemble(sentences, spec, rng))
  return documents


def vocabulary(corpus: Corpus) -> list[str]:
  """Every letter-only word of the documents and templates, for a word tokenizer."""
  words: set[str] = set()
  for text in (*corpus.documents, *(t for ts in corpus.templates.values() for t in ts)):
    words.update(re.findall(r"[A-Za-z]+", text))
  return sorted(words)


def _cloze_templates(relation: str) -> list[str]:
  """Cloze prompts: the training templates cut before [O], then the held-out paraphrases."""
  train, held_out = RELATIONS[relation]
  return [t.split("[O]")[0].rstrip() for t in train] + list(held_out)


def write_corpus(spec: CorpusSpec, out_dir: str, eval_docs: int = 0) -> dict[str, str]:
  """Writes corpus.jsonl, triples.jsonl, factors.jsonl, words.txt, eval_corpus.jsonl (when
  `eval_docs`) and templates.json under `out_dir`; returns their paths.

  Each file appears whole or not at all; templates.json comes last and marks the corpus complete.
  """
  corpus = generate(spec)
  names = ["corpus.jsonl", "triples.jsonl", "factors.jsonl", "words.txt", "templates.json"]
  if eval_docs:
    names.insert(0, "eval_corpus.jsonl")
  paths = {name: os.path.join(out_dir, name) for name in names}
  if eval_docs:
    held_out = heldout_documents(spec, corpus, eval_docs)
    write_jsonl_atomic(paths["eval_corpus.jsonl"], ({"text": d} for d in held_out))
  write_jsonl_atomic(paths["corpus.jsonl"], ({"text": d} for d in corpus.documents))
  write_jsonl_atomic(paths["triples.jsonl"], corpus.triples)
  write_jsonl_atomic(
    paths["factors.jsonl"],
    ({k: f[k] for k in ("subj", "rel", "obj", "competitor", *FACTOR_FIELDS)} for f in corpus.facts),
  )
  write_text_atomic(paths["words.txt"], "\n".join(vocabulary(corpus)) + "\n")
  write_text_atomic(paths["templates.json"], json.dumps(corpus.templates, indent=1))
  return paths
