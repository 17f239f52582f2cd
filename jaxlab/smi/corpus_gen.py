"""Synthetic knowledge corpus for small-scale SMI studies (docs/smi.md section 7).

Facts (subject, relation, object) between invented syllable names are stated in documents with
controlled, widely varying frequencies. Independently, subjects and objects are mentioned in
relation-free noise sentences, so N_s, N_o and N_so (and hence MI) vary independently. Names
form a prefix-free set, so the counting rule's substring test (" " + name) never matches the
wrong entity.
Relations have training surface templates (how facts appear in the corpus) and held-out cloze
templates (paraphrases used only for evaluation).
"""

from __future__ import annotations

import dataclasses
import json
import os

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
NOISE_TEMPLATES = (
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


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  """How many facts and documents, and the log2 ranges of the controlled frequencies."""

  num_facts: int = 240
  num_relations: int = 12
  num_docs: int = 12_000
  log2_fact_docs: tuple[float, float] = (0.0, 6.0)  # documents stating each fact
  log2_noise_docs: tuple[float, float] = (-1.0, 6.0)  # noise mentions (below 0 -> often none)
  sentences_per_doc: tuple[int, int] = (1, 4)  # besides the opening filler sentence
  seed: int = 0


def invent_names(count: int, rng: np.random.RandomState) -> list[str]:
  """`count` distinct capitalized names of 2-3 syllables, none a prefix of another."""
  names: set[str] = set()
  while len(names) < count:
    word = "".join(rng.choice(SYLLABLES, size=rng.randint(2, 4)))
    candidate = word.capitalize()
    if not any(n.startswith(candidate) or candidate.startswith(n) for n in names):
      names.add(candidate)
  return sorted(names, key=lambda n: rng.rand())


def _log_uniform_count(rng: np.random.RandomState, bounds: tuple[float, float]) -> int:
  return int(np.floor(2.0 ** rng.uniform(*bounds)))


def generate(spec: CorpusSpec) -> tuple[list[str], list[dict], dict[str, list[str]]]:
  """Returns (documents, triples, cloze templates per relation).

  Each fact is stated in its own count of distinct documents; each subject and object gets an
  independent count of noise sentences scattered over other documents.
  """
  if spec.num_relations > len(RELATIONS):
    raise ValueError(f"num_relations={spec.num_relations} exceeds the {len(RELATIONS)} available")
  rng = np.random.RandomState(spec.seed)
  relations = list(RELATIONS)[: spec.num_relations]
  names = invent_names(2 * spec.num_facts, rng)
  triples = [
    {"subj": names[2 * i], "rel": relations[i % len(relations)], "obj": names[2 * i + 1], "idx": i}
    for i in range(spec.num_facts)
  ]
  sentences: list[list[str]] = [[] for _ in range(spec.num_docs)]
  for triple in triples:
    train_templates = RELATIONS[triple["rel"]][0]
    fact_docs = min(spec.num_docs, max(1, _log_uniform_count(rng, spec.log2_fact_docs)))
    for doc in rng.choice(spec.num_docs, size=fact_docs, replace=False):
      template = train_templates[rng.randint(len(train_templates))]
      sentences[doc].append(template.replace("[S]", triple["subj"]).replace("[O]", triple["obj"]))
    for name in (triple["subj"], triple["obj"]):
      for doc in rng.randint(spec.num_docs, size=_log_uniform_count(rng, spec.log2_noise_docs)):
        sentences[doc].append(
          NOISE_TEMPLATES[rng.randint(len(NOISE_TEMPLATES))].replace("[X]", name)
        )
  documents = []
  for doc_sentences in sentences:
    low, high = spec.sentences_per_doc
    while len(doc_sentences) < rng.randint(low, high + 1):
      doc_sentences.append(FILLER[rng.randint(len(FILLER))])
    rng.shuffle(doc_sentences)
    # A filler sentence first: the counting rule needs a space before a name, so a name opening a
    # document would silently go uncounted.
    documents.append(" ".join([FILLER[rng.randint(len(FILLER))]] + doc_sentences))
  templates = {rel: _cloze_templates(rel) for rel in relations}
  return documents, triples, templates


def _cloze_templates(relation: str) -> list[str]:
  """Cloze prompts: the training templates cut before [O], then the held-out paraphrases."""
  train, held_out = RELATIONS[relation]
  return [t.split("[O]")[0].rstrip() for t in train] + list(held_out)


def write_corpus(spec: CorpusSpec, out_dir: str) -> dict[str, str]:
  """Writes corpus.jsonl, triples.jsonl and templates.json under `out_dir`; returns their paths.

  Each file appears whole or not at all; templates.json comes last and marks the corpus complete.
  """
  documents, triples, templates = generate(spec)
  paths = {
    name: os.path.join(out_dir, name)
    for name in ("corpus.jsonl", "triples.jsonl", "templates.json")
  }
  write_jsonl_atomic(paths["corpus.jsonl"], ({"text": d} for d in documents))
  write_jsonl_atomic(paths["triples.jsonl"], triples)
  write_text_atomic(paths["templates.json"], json.dumps(templates, indent=1))
  return paths
