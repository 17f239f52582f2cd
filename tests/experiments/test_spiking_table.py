from jaxlab.experiments.spiking_table import results_table


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
