import json

import pytest

from jaxlab.experiments.spiking_table import main, results_table


def _summary(task, pe, seed, value, metric="test_accuracy"):
  return {
    "task": task,
    "pe": pe,
    "seed": seed,
    "metric": metric,
    metric: value,
    "test_size": 100,
    "wall_time_s": 10.0 + seed,
  }


def test_rows_are_grouped_by_task_and_encoding_with_mean_and_std_over_seeds():
  table = results_table(
    [
      _summary("words", "log", 0, 0.7),
      _summary("words", "none", 0, 0.5),
      _summary("words", "log", 1, 0.8),
      _summary("forecast", "conv", 0, 0.25, metric="test_r2"),
    ]
  )
  lines = table.splitlines()
  assert lines[2] == "| words | none | test_accuracy | 0.500 +- 0.000 | 1 | 100 | 10 |"
  assert lines[3] == "| words | log | test_accuracy | 0.750 +- 0.071 | 2 | 100 | 10 |"
  assert lines[4] == "| forecast | conv | test_r2 | 0.250 +- 0.000 | 1 | 100 | 10 |"


def test_cli_prints_the_table_of_finished_runs(tmp_path, capsys):
  (tmp_path / "summary.json").write_text(json.dumps(_summary("words", "conv", 0, 0.625)))
  main([str(tmp_path)])
  row = "| words | conv | test_accuracy | 0.625 +- 0.000 | 1 | 100 | 10 |"
  assert row in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"task": "words"})])
def test_cli_reports_a_missing_or_bad_summary_in_one_line(tmp_path, capsys, content):
  if content is not None:
    (tmp_path / "summary.json").write_text(content)
  with pytest.raises(SystemExit) as exit_info:
    main([str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
