import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from .test_metric_fit import RECORDS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fit(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", "jaxlab.smi.fit", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def _write(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def _independent_fit(points):
  """slope, intercept, R^2, MSE of the group-mean line, by numpy on (x, [accuracies]) groups."""
  gx = np.array([x for x, _ in points])
  gy = np.array([np.mean(ys) for _, ys in points])
  slope, intercept = np.polyfit(gx, gy, 1)
  r2 = np.corrcoef(gx, gy)[0, 1] ** 2
  mse = np.mean([np.mean((np.array(ys) - (slope * x + intercept)) ** 2) for x, ys in points])
  return slope, intercept, r2, mse


# RECORDS' kept triples A, B, F, G (worked out in test_metric_fit) have accuracies 0.9, 0.1, 0.7,
# 0.5; min-max normalized predictors: MI 1, 0, 1, 4/7 and CO-OCCUR 1, 0, 0.5, 0.2. SMI raises MI
# to 1 + 1/P, P = log2(7e9) for the latest variant and 7 (billions) for v1.
P = {"latest": math.log2(7e9), "v1": 7.0}


@pytest.mark.parametrize("variant", ["latest", "v1"])
def test_fit_cli_writes_json_table_and_plots(tmp_path, variant):
  records = _write(tmp_path / "records.jsonl", RECORDS)
  out = tmp_path / "fit"
  result = _fit("--records", records, "--params", "7e9", "--variant", variant, "--out", str(out))
  assert result.returncode == 0, result.stderr
  fit = json.loads((out / "fit.json").read_text())
  assert (fit["n_triples"], fit["n_dropped"]) == (7, 3)
  assert list(fit["methods"]) == ["CO-OCCUR", "MI", "SMI"]
  groups = {
    "CO-OCCUR": [(0.0, [0.1]), (0.2, [0.5]), (0.5, [0.7]), (1.0, [0.9])],
    "MI": [(0.0, [0.1]), (4 / 7, [0.5]), (1.0, [0.9, 0.7])],
    "SMI": [(0.0, [0.1]), ((4 / 7) ** (1 + 1 / P[variant]), [0.5]), (1.0, [0.9, 0.7])],
  }
  for method, points in groups.items():
    slope, intercept, r2, mse = _independent_fit(points)
    expected = {
      "slope": slope,
      "intercept": intercept,
      "r2": r2,
      "mse": mse,
      "upper_bound": slope + intercept,
    }
    got = fit["methods"][method]
    assert got["n_groups"] == len(points) and set(got) == {*expected, "n_groups"}
    assert {k: got[k] for k in expected} == pytest.approx(expected, rel=1e-9, abs=1e-12), method
  # MI's group means lie on 0.1 + 0.7 x exactly (hand-worked in test_metric_fit).
  assert fit["methods"]["MI"]["slope"] == pytest.approx(0.7)
  # The printed table carries the same numbers.
  table = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
  for method, row in table.items():
    f = fit["methods"][method]
    assert row == [
      f"{f['r2']:.3f}",
      f"{f['mse']:.4f}",
      f"{f['slope']:.3f}",
      f"{f['intercept']:.3f}",
      f"{f['upper_bound']:.3f}",
      str(f["n_groups"]),
    ]
  assert table["MI"] == ["1.000", "0.0033", "0.700", "0.100", "0.800", "3"]
  assert result.stdout.splitlines()[0] == "n_triples=7 n_dropped=3"
  for method in ("CO-OCCUR", "MI", "SMI"):
    assert (out / f"scatter_{method}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
  "line,args,message",
  [
    (
      '{"subj": "s", "rel": "r", "obj": "o", "n_docs": 64, "n_subj": 2, "n_obj": 3, "n_both": 1}',
      [],
      "error: {records}:8: field 'acc' must be a number in [0, 1], got None",
    ),
    (
      '{"subj": "s", "rel": "r", "obj": "o", "n_docs": 4, "n_subj": 2, "n_obj": 3, "n_both": 3, '
      '"acc": 0.5}',
      [],
      "error: {records}:8: counts must satisfy",
    ),
    ("", ["--variant", "v2"], "error: argument --variant: invalid choice: 'v2'"),
    ("", ["--params", "0"], "error: params=0.0 gives no positive P for the latest variant"),
  ],
)
def test_fit_cli_bad_input_is_one_line_exit_2(tmp_path, line, args, message):
  records = tmp_path / "records.jsonl"
  records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + line + "\n")
  out = tmp_path / "fit"
  result = _fit("--records", str(records), "--params", "7e9", "--out", str(out), *args)
  assert result.returncode == 2
  assert result.stderr.startswith(message.format(records=records)), result.stderr
  assert result.stderr.count("\n") == 1
  assert not out.exists()


def test_fit_cli_too_few_kept_triples(tmp_path):
  records = _write(tmp_path / "records.jsonl", RECORDS[2:5])  # all three are dropped
  result = _fit("--records", records, "--params", "7e9", "--out", str(tmp_path / "fit"))
  assert result.returncode == 2
  assert result.stderr == (
    "error: CO-OCCUR: a line needs at least 2 distinct predictor values, "
    "got 0 (3 triples, 3 dropped)\n"
  )
