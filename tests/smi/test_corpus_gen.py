import numpy as np

from jaxlab.smi.corpus_gen import CorpusSpec, generate, invent_names
from jaxlab.smi.count import count_triples_naive
from jaxlab.smi.triples import Triple

SPEC = CorpusSpec(num_facts=60, num_docs=1500, seed=3)


def test_names_are_prefix_free_so_substring_matches_are_exact():
  names = invent_names(300, np.random.RandomState(0))
  assert len(set(names)) == 300
  for a in names:
    assert not any(b != a and b.startswith(a) for b in names)


def test_generation_is_deterministic_and_seeded():
  first, second = generate(SPEC), generate(SPEC)
  assert first == second
  other = generate(CorpusSpec(num_facts=60, num_docs=1500, seed=4))
  assert other[0] != first[0]


def test_counts_vary_widely_and_independently():
  documents, triples, templates = generate(SPEC)
  assert len(documents) == SPEC.num_docs
  rows = count_triples_naive([Triple(t["subj"], t["rel"], t["obj"]) for t in triples], documents)
  n_both = np.array([r["n_both"] for r in rows])
  n_subj = np.array([r["n_subj"] for r in rows])
  n_obj = np.array([r["n_obj"] for r in rows])
  assert (
    n_both.min() >= 1 and n_both.max() >= 32
  )  # every fact is stated, frequencies span 5+ octaves
  noise_subj, noise_obj = n_subj - n_both, n_obj - n_both
  assert noise_subj.max() >= 16 and (noise_subj == 0).any()
  # Noise mentions are drawn independently of the fact frequency and of each other.
  assert abs(np.corrcoef(n_both, noise_subj)[0, 1]) < 0.4
  assert abs(np.corrcoef(noise_subj, noise_obj)[0, 1]) < 0.4


def test_templates_cover_every_relation_and_hold_out_paraphrases():
  documents, triples, templates = generate(SPEC)
  corpus = " ".join(documents)
  for rel in {t["rel"] for t in triples}:
    assert all("[S]" in t for t in templates[rel])
    longest_part = max(templates[rel][-1].split("[S]"), key=len).strip()
    assert longest_part not in corpus  # the held-out paraphrase never appears in training text
    assert templates[rel][0].split("[S]")[1].strip() in corpus  # the training form does
