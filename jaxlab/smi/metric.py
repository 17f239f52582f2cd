"""The predictors of docs/smi.md section 3: CO-OCCUR, MI and SMI, quantized and min-max normalized.

Formulas follow the paper's released analysis exactly (checked against its tables): quantization
truncates toward zero with Python int(), and min-max runs over the triples kept after dropping
MI <= 0 (which includes N_so = 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

VARIANTS = ("latest", "v1")
METHODS = ("CO-OCCUR", "MI", "SMI")


def quantize(x: float) -> float:
  """trunc(5 * log2(x)) / 5 with truncation toward zero: log2 on 0.2-wide bins. Needs x > 0."""
  return int(5 * math.log2(x)) / 5


def mutual_information(n_so: int, n_s: int, n_o: int, n: int) -> float:
  """p_so * log2(p_so / (p_s * p_o)) with p = count / n; 0 when the pair never co-occurs."""
  if n_so == 0:
    return 0.0
  p_so, p_s, p_o = n_so / n, n_s / n, n_o / n
  return p_so * math.log2(p_so / (p_s * p_o))


def minmax(values: Sequence[float]) -> list[float]:
  """(v - min) / (max - min); all zeros when every value is the same."""
  lo, hi = min(values), max(values)
  if hi == lo:
    return [0.0] * len(values)
  return [(v - lo) / (hi - lo) for v in values]


def model_size_term(params: float, variant: str) -> float:
  """P of the SMI exponent: log2(params) for `latest`, params in billions for `v1`."""
  if variant == "latest":
    size = math.log2(params) if params > 0 else 0.0
  elif variant == "v1":
    size = params / 1e9
  else:
    raise ValueError(f"unknown SMI variant {variant!r}; expected one of {', '.join(VARIANTS)}")
  if not size > 0:
    raise ValueError(f"params={params!r} gives no positive P for the {variant} variant")
  return size


def smi(mi_norm: float, params: float, variant: str = "latest") -> float:
  """Size-dependent MI: MI_norm ** (1 + 1/P), P from the model size (see model_size_term)."""
  return mi_norm ** (1 + 1 / model_size_term(params, variant))


def predictors(
  records: Sequence[Mapping], params: float, variant: str = "latest"
) -> tuple[list[Mapping], int, dict[str, list[float]]]:
  """Drops records with MI <= 0 and computes each predictor for the kept ones.

  Records carry n_docs, n_subj, n_obj, n_both. Returns (kept records, number dropped,
  {"CO-OCCUR": [...], "MI": [...], "SMI": [...]}) with values aligned to the kept records.
  """
  model_size_term(params, variant)  # bad params or variant fail before any work
  kept, mi = [], []
  for r in records:
    value = mutual_information(r["n_both"], r["n_subj"], r["n_obj"], r["n_docs"])
    if value > 0:
      kept.append(r)
      mi.append(value)
  if not kept:
    return kept, len(records), {method: [] for method in METHODS}
  mi_norm = minmax([quantize(v) for v in mi])
  return (
    kept,
    len(records) - len(kept),
    {
      "CO-OCCUR": minmax([quantize(r["n_both"]) for r in kept]),
      "MI": mi_norm,
      "SMI": [smi(v, params, variant) for v in mi_norm],
    },
  )
