import json
import os
import subprocess
import sys

import pytest

from jaxlab.smi.fit import fit_records

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


@pytest.mark.parametrize("variant", ["latest", "v1"])
def test_fit_cli_writes_json_table_and_plots(tmp_path, variant):
  records = _write(tmp_path / "records.jsonl", RECORDS)
  out = tmp_path / "fit"
  result = _fit("--records", records, "--params", "7e9", "--variant", variant, "--out", str(out))
  assert result.returncode == 0, result.stderr
  fit = json.loads((out / "fit.json").read_text())
  assert fit == fit_records(RECORDS, 7e9, variant)  # floats survive JSON exactly
  assert list(fit["methods"]) == ["CO-OCCUR", "MI", "SMI"]
  assert set(fit["methods"]["MI"]) == {"r2", "mse", "slope", "intercept", "upper_bound", "n_groups"}
  assert "n_triples=7 n_dropped=3" in result.stdout and "SMI" in result.stdout
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
