import json
import math
import struct

import numpy as np
import pytest

from jaxlab.smi import fit as fit_module
from jaxlab.smi.fit import (
  MAX_COUNT,
  _parse_args,
  fit_records,
  format_table,
  group_mean_fit,
  load_records,
  plot_fit,
  save_scatter,
)
from jaxlab.smi.metric import minmax, model_size_term, mutual_information, predictors, quantize, smi


def test_quantize_truncates_toward_zero():
  assert quantize(2**-1.3) == -1.2  # 5*log2 = -6.5 -> int() -> -6; floor would give -1.4
  assert quantize(2**1.3) == 1.2
  assert quantize(8) == 3.0 and quantize(1) == 0.0
  assert quantize(3 / 32) == -3.4  # 5*log2 = -17.07 -> -17


def test_mutual_information_and_minmax():
  assert mutual_information(8, 8, 16, 64) == pytest.approx(0.25)
  assert mutual_information(0, 5, 5, 64) == 0.0
  assert mutual_information(1, 32, 32, 64) < 0
  assert minmax([-3.4, -2.0, -2.6]) == pytest.approx([0.0, 1.0, 0.8 / 1.4])
  assert minmax([2.0, 2.0]) == [0.0, 0.0]


def test_smi_variants():
  assert model_size_term(7e9, "latest") == pytest.approx(32.70, abs=0.01)
  assert model_size_term(7e9, "v1") == pytest.approx(7.0)
  assert smi(0.5, 2**32, "latest") == pytest.approx(0.5 ** (33 / 32))
  assert smi(0.5, 2e9, "v1") == pytest.approx(0.5**1.5)
  with pytest.raises(ValueError, match="unknown SMI variant 'v9'"):
    smi(0.5, 7e9, "v9")
  with pytest.raises(ValueError, match="no positive P"):
    smi(0.5, 0, "v1")


def test_model_size_term_by_hand_and_its_errors():
  assert model_size_term(1024, "latest") == 10.0
  assert model_size_term(1.5, "latest") == pytest.approx(math.log2(1.5))  # P in (0, 1) is kept
  assert model_size_term(7e9, "v1") == 7.0  # params / 1e9, exactly
  assert model_size_term(5e8, "v1") == 0.5
  for params in (0, -8, 1):  # log2 of 0 and below is never taken; log2(1) = 0 is no P
    with pytest.raises(ValueError, match=f"^params={params} gives no positive P for the latest"):
      model_size_term(params, "latest")
  with pytest.raises(ValueError, match="; expected one of latest, v1$"):
    model_size_term(7e9, "v9")
  # The default variant is "latest".
  assert smi(0.5, 1024) == pytest.approx(0.5**1.1)


def _record(n_both, n_subj, n_obj, acc, n_docs=64):
  return {
    "subj": "s",
    "rel": "r",
    "obj": "o",
    "n_docs": n_docs,
    "n_subj": n_subj,
    "n_obj": n_obj,
    "n_both": n_both,
    "acc": acc,
  }


# Kept, with MI and its quantization q worked out by hand (N = 64):
#   A: p_so=1/8, p_s=1/8, p_o=1/4:   MI = 1/8*log2(4) = 1/4,  q(MI) = -2.0;  q(N_so=8) = 3.0
#   B: p_so=1/32, p_s=p_o=1/16:      MI = 1/32*log2(8) = 3/32, 5*log2 = -17.08 -> -17,
#                                    q(MI) = -3.4 (floor would give -3.6);  q(2) = 1.0
#   F: p_so=p_s=p_o=1/16:            MI = 1/16*log2(16) = 1/4,  q(MI) = -2.0;  q(4) = 2.0
#   G: p_so=p_s=3/64, p_o=6/64:      MI = 3/64*log2(32/3) = 0.16008, 5*log2 = -13.22 -> -13,
#                                    q(MI) = -2.6 (not -2.8);  5*log2(3) = 7.92 -> q(3) = 1.4
# Dropped: C (MI = 0: object in every document), D (N_so = 0), E (MI < 0).
RECORDS = [
  _record(8, 8, 16, acc=0.9),  # A
  _record(2, 4, 4, acc=0.1),  # B
  _record(1, 1, 64, acc=0.3),  # C
  _record(0, 5, 7, acc=0.0),  # D
  _record(1, 32, 32, acc=0.2),  # E
  _record(4, 4, 4, acc=0.7),  # F
  _record(3, 3, 6, acc=0.5),  # G
]


def _ols(points):
  """Slope, intercept, r^2 of a line through (x, y) points, from the textbook sums."""
  n = len(points)
  mx = sum(x for x, _ in points) / n
  my = sum(y for _, y in points) / n
  sxx = sum((x - mx) ** 2 for x, _ in points)
  syy = sum((y - my) ** 2 for _, y in points)
  sxy = sum((x - mx) * (y - my) for x, y in points)
  a = sxy / sxx
  return a, my - a * mx, sxy**2 / (sxx * syy)


def test_predictors_drop_and_normalize_by_hand():
  kept, n_dropped, xs = predictors(RECORDS, 2**32, "latest")
  assert n_dropped == 3 and kept == [RECORDS[i] for i in (0, 1, 5, 6)]
  # MI: q = -2.0, -3.4, -2.0, -2.6 -> min-max over kept: 1, 0, 1, 0.8/1.4.
  assert xs["MI"] == pytest.approx([1.0, 0.0, 1.0, 4 / 7])
  # CO-OCCUR: q = 3.0, 1.0, 2.0, 1.4 -> 1, 0, 0.5, 0.2.
  assert xs["CO-OCCUR"] == pytest.approx([1.0, 0.0, 0.5, 0.2])
  assert xs["SMI"] == pytest.approx([1.0, 0.0, 1.0, (4 / 7) ** (1 + 1 / 32)])
  assert predictors(RECORDS, 2**32) == (kept, n_dropped, xs)  # "latest" by default
  _, _, xs_v1 = predictors(RECORDS, 2e9, "v1")
  assert xs_v1["SMI"] == pytest.approx([1.0, 0.0, 1.0, (4 / 7) ** 1.5])


def test_fit_reproduces_hand_computed_example():
  result = fit_records(RECORDS, 2**32, "latest")
  assert (result["n_triples"], result["n_dropped"]) == (7, 3)
  # MI groups: x=0 -> [0.1]; x=4/7 -> [0.5]; x=1 -> [0.9, 0.7] (mean 0.8): 3 unweighted points.
  a, b, r2 = _ols([(0.0, 0.1), (4 / 7, 0.5), (1.0, 0.8)])
  mse = (
    (0.1 - b) ** 2
    + (0.5 - (a * 4 / 7 + b)) ** 2
    + ((0.9 - (a + b)) ** 2 + (0.7 - (a + b)) ** 2) / 2
  ) / 3
  mi = result["methods"]["MI"]
  assert mi["n_groups"] == 3
  assert (mi["slope"], mi["intercept"], mi["r2"], mi["mse"], mi["upper_bound"]) == pytest.approx(
    (a, b, r2, mse, a + b), abs=1e-12
  )
  # Worked through: sxx = 74/147, sxy = 0.7 * 74/147 -> a = 0.7, b = 0.1; the means lie on it,
  # so R^2 = 1, while the spread inside the x=1 group (0.9 vs 0.7) still shows in the MSE.
  assert (a, b, r2) == pytest.approx((0.7, 0.1, 1.0))
  assert mse == pytest.approx(0.01 / 3)
  # CO-OCCUR: four singleton groups at 0, 0.2, 0.5, 1.
  a, b, r2 = _ols([(0.0, 0.1), (0.2, 0.5), (0.5, 0.7), (1.0, 0.9)])
  co = result["methods"]["CO-OCCUR"]
  assert co["n_groups"] == 4
  assert (co["slope"], co["intercept"], co["r2"]) == pytest.approx((a, b, r2))
  mse = (
    (0.1 - b) ** 2 + (0.5 - (0.2 * a + b)) ** 2 + (0.7 - (0.5 * a + b)) ** 2 + (0.9 - (a + b)) ** 2
  ) / 4
  assert co["mse"] == pytest.approx(mse)
  smi_fit = result["methods"]["SMI"]
  a, b, r2 = _ols([(0.0, 0.1), ((4 / 7) ** (33 / 32), 0.5), (1.0, 0.8)])
  assert (smi_fit["slope"], smi_fit["intercept"], smi_fit["r2"]) == pytest.approx((a, b, r2))


def test_group_mean_fit_matches_polyfit_on_group_means():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 12, 500) / 11
  acc = np.clip(0.6 * x + 0.1 + rng.normal(0, 0.2, 500), 0, 1)
  fit = group_mean_fit(x, acc)
  gx = np.unique(x)
  gy = np.array([acc[x == v].mean() for v in gx])
  slope, intercept = np.polyfit(gx, gy, 1)
  assert fit["n_groups"] == len(gx) == 12
  assert (fit["slope"], fit["intercept"]) == pytest.approx((slope, intercept))
  assert fit["r2"] == pytest.approx(np.corrcoef(gx, gy)[0, 1] ** 2)
  # The per-triple R^2 is much lower than the group-mean R^2: the reason for grouping.
  assert np.corrcoef(x, acc)[0, 1] ** 2 < fit["r2"]
  assert math.isclose(fit["upper_bound"], slope + intercept)


def test_group_mean_fit_needs_two_groups():
  with pytest.raises(ValueError, match="at least 2 distinct predictor values, got 1"):
    group_mean_fit([0.5, 0.5], [0.1, 0.2])


def test_format_table_by_hand():
  row = {"r2": 0.98765, "mse": 0.00123, "slope": 0.61234, "intercept": -0.1, "upper_bound": 0.51234}
  result = {
    "n_triples": 7,
    "n_dropped": 3,
    "methods": {"MI": {**row, "n_groups": 3}, "CO-OCCUR": {**row, "r2": 0.5, "n_groups": 12}},
  }
  assert format_table(result).split("\n") == [
    "n_triples=7 n_dropped=3",
    "method       R^2      MSE   slope intercept  upper groups",
    "MI         0.988   0.0012   0.612    -0.100  0.512      3",
    "CO-OCCUR   0.500   0.0012   0.612    -0.100  0.512     12",
  ]


def _fit_args(**replace):
  args = {"--records": "r.jsonl", "--params": "7e9", "--out": "out", **replace}
  return [part for key, value in args.items() if value is not None for part in (key, value)]


def test_fit_command_line_arguments(capsys, monkeypatch):
  args = _parse_args(_fit_args())
  assert (args.records, args.params, args.variant, args.out) == ("r.jsonl", 7e9, "latest", "out")
  assert _parse_args(_fit_args(**{"--variant": "v1"})).variant == "v1"
  for argv, message in [
    (_fit_args(**{"--records": None}), "the following arguments are required: --records"),
    (_fit_args(**{"--params": None}), "the following arguments are required: --params"),
    (_fit_args(**{"--out": None}), "the following arguments are required: --out"),
    (_fit_args(**{"--variant": "v9"}), "argument --variant: invalid choice: 'v9'"),
  ]:
    with pytest.raises(SystemExit) as exit_info:
      _parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
  monkeypatch.setenv("COLUMNS", "200")
  with pytest.raises(SystemExit):
    _parse_args(["--help"])
  usage = capsys.readouterr().out
  assert usage.startswith("usage: python -m jaxlab.smi.fit [-h] --records RECORDS --params PARAMS")
  words = " ".join(usage.split())
  for text in (
    "Group-mean linear fit of CBQA accuracy on each predictor (docs/smi.md section 4).",
    "--records RECORDS JSONL of counts + accuracy per triple.",
    "--params PARAMS Model parameters, e.g. 7e9.",
    "--variant {latest,v1} SMI variant.",
    "--out OUT Directory for fit.json and the plots.",
  ):
    assert text in words
  assert fit_module.__doc__.split("\n")[0] in words
  assert "R.jsonl" not in words  # the description is the docstring's first line only


def test_scatter_plot_shows_group_means_and_the_fitted_line(tmp_path, monkeypatch):
  from matplotlib.figure import Figure

  figures = []
  savefig = Figure.savefig
  monkeypatch.setattr(
    Figure, "savefig", lambda self, *a, **k: (figures.append(self), savefig(self, *a, **k))
  )
  # Groups: x=0 -> [0.2]; x=0.5 -> [0.4]; x=1 -> [0.9, 0.7] (mean 0.8, twice the area).
  x, acc = [0.0, 1.0, 1.0, 0.5], [0.2, 0.9, 0.7, 0.4]
  path = tmp_path / "scatter_MI.png"
  save_scatter(str(path), "MI", x, acc, {"slope": 0.6, "intercept": 0.2, "r2": 0.98765})
  header = path.read_bytes()[:24]
  assert header[:8] == b"\x89PNG\r\n\x1a\n"
  assert struct.unpack(">II", header[16:24]) == (540, 420)  # 4.5 x 3.5 inches at 120 dpi
  (figure,) = figures
  assert type(figure.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
  (ax,) = figure.axes
  assert (ax.get_xlabel(), ax.get_ylabel()) == ("MI (normalized)", "CBQA accuracy (group mean)")
  assert ax.get_xlim() == pytest.approx((-0.03, 1.03))
  legend = ax.get_legend()
  assert legend._loc == 2  # "upper left"
  assert [t.get_text() for t in legend.get_texts()] == ["MI ($R^2$=0.988)"]
  (points,) = ax.collections
  np.testing.assert_allclose(points.get_offsets(), [[0.0, 0.2], [0.5, 0.4], [1.0, 0.8]])
  np.testing.assert_allclose(points.get_sizes(), [68.0, 68.0, 128.0])  # 8 + 120 * size / max
  assert points.get_alpha() == 0.6
  (line,) = ax.lines
  np.testing.assert_allclose(line.get_xydata(), [[0.0, 0.2], [1.0, 0.8]])  # predictor 0 to 1
  np.testing.assert_allclose(line.get_color(), points.get_facecolor()[0][:3])  # opaque


def test_plot_fit_takes_a_color():
  from matplotlib.colors import to_rgb
  from matplotlib.figure import Figure

  ax = Figure().subplots()
  plot_fit(ax, [0.0, 1.0], [0.1, 0.9], {"slope": 0.8, "intercept": 0.1, "r2": 1.0}, "7B", "#123456")
  (points,) = ax.collections
  np.testing.assert_allclose(points.get_facecolor()[0], [*to_rgb("#123456"), 0.6])
  np.testing.assert_allclose(ax.lines[0].get_color(), to_rgb("#123456"))
  assert ax.lines[0].get_label() == "7B ($R^2$=1.000)"


def test_group_mean_fit_edges():
  # Two groups are enough for a line; equal group means give r2 = 0 (no variance to explain).
  fit = group_mean_fit([0.0, 1.0, 1.0], [0.2, 0.6, 0.8])
  assert (fit["slope"], fit["intercept"], fit["r2"], fit["n_groups"]) == pytest.approx(
    (0.5, 0.2, 1.0, 2)
  )
  flat = group_mean_fit([0.0, 1.0, 1.0], [0.5, 0.4, 0.6])
  assert (flat["slope"], flat["r2"]) == (0.0, 0.0)


def test_fit_records_default_variant_and_errors():
  assert fit_records(RECORDS, 2**32) == fit_records(RECORDS, 2**32, "latest")
  _, _, xs_v1 = predictors(RECORDS, 2e9, "v1")
  acc = [0.9, 0.1, 0.7, 0.5]  # of the kept triples A, B, F, G
  assert fit_records(RECORDS, 2e9, "v1")["methods"]["SMI"] == group_mean_fit(xs_v1["SMI"], acc)
  with pytest.raises(ValueError, match="zip"):  # predictor values and accuracies pair up
    group_mean_fit([0.0, 0.5, 1.0], [0.1, 0.2])
  with pytest.raises(ValueError) as error:
    fit_records(RECORDS[:1] + RECORDS[2:5], 2**32)  # one kept triple
  assert str(error.value) == (
    "CO-OCCUR: a line needs at least 2 distinct predictor values, got 1 (4 triples, 3 dropped)"
  )


def _jsonl(tmp_path, rows):
  path = tmp_path / "records.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def test_load_records_keeps_valid_edges(tmp_path):
  edges = [
    _record(1, 1, 1, acc=1, n_docs=1),
    _record(0, 0, 0, acc=0, n_docs=MAX_COUNT),
    _record(5, 5, MAX_COUNT, acc=0.5, n_docs=MAX_COUNT),
  ]
  assert load_records(_jsonl(tmp_path, RECORDS + edges)) == RECORDS + edges


COUNTS_MESSAGE = "counts must satisfy n_both <= n_subj, n_obj <= n_docs and n_docs > 0"


@pytest.mark.parametrize(
  "row,message",
  [
    ([1], "expected a JSON object"),
    ({**_record(1, 1, 1, 0.5), "subj": None}, "field 'subj' must be a string, got None"),
    ({**_record(1, 1, 1, 0.5), "rel": 3}, "field 'rel' must be a string, got 3"),
    ({**_record(1, 1, 1, 0.5), "obj": ["o"]}, "field 'obj' must be a string, got ['o']"),
    (
      {k: v for k, v in _record(1, 1, 1, 0.5).items() if k != "n_docs"},
      "field 'n_docs' must be an integer in [0, 2**53], got None",
    ),
    (
      {**_record(1, 1, 1, 0.5), "n_docs": "64"},
      "field 'n_docs' must be an integer in [0, 2**53], got '64'",
    ),
    ({**_record(1, 1, 1, 0.5), "n_subj": True}, "field 'n_subj' must be an integer in"),
    ({**_record(1, 1, 1, 0.5), "n_obj": 1.0}, "field 'n_obj' must be an integer in"),
    (_record(-1, 1, 1, 0.5), "field 'n_both' must be an integer in [0, 2**53], got -1"),
    (_record(1, 1, 1, 0.5, n_docs=MAX_COUNT + 1), "field 'n_docs' must be an integer in"),
    (_record(0, 0, 0, 0.5, n_docs=0), COUNTS_MESSAGE),
    (_record(2, 1, 4, 0.5), COUNTS_MESSAGE),
    (_record(2, 4, 1, 0.5), COUNTS_MESSAGE),
    (_record(1, 65, 1, 0.5), COUNTS_MESSAGE),
    (_record(1, 1, 65, 0.5), COUNTS_MESSAGE),
    ({**_record(1, 1, 1, 0.5), "acc": None}, "field 'acc' must be a number in [0, 1], got None"),
    (_record(1, 1, 1, True), "field 'acc' must be a number in [0, 1], got True"),
    (_record(1, 1, 1, 1.5), "field 'acc' must be a number in [0, 1], got 1.5"),
  ],
)
def test_load_records_names_the_bad_line(tmp_path, row, message):
  path = _jsonl(tmp_path, [RECORDS[0], row])
  with pytest.raises(ValueError) as error:
    load_records(path)
  assert str(error.value).startswith(f"{path}:2: {message}")


def test_load_records_reports_a_line_that_is_not_json(tmp_path):
  path = tmp_path / "records.jsonl"
  path.write_text(json.dumps(RECORDS[0]) + "\n{\n")
  with pytest.raises(ValueError) as error:
    load_records(str(path))
  assert str(error.value).startswith(f"{path}:2: invalid JSON: Expecting property name")
