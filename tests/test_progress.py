import io
import types

import pytest

import jaxlab.progress
from jaxlab.progress import Progress


class FakeClock:
  """Stands in for the time module: monotonic() returns `now`, which the test moves."""

  def __init__(self):
    self.now = 0.0

  def monotonic(self) -> float:
    return self.now


class TtyStream(io.StringIO):
  def isatty(self) -> bool:
    return True


@pytest.fixture
def clock(monkeypatch):
  fake = FakeClock()
  monkeypatch.setattr(jaxlab.progress, "time", types.SimpleNamespace(monotonic=fake.monotonic))
  return fake


def _tick(progress, clock, at, done, metrics=None):
  clock.now = at
  progress.update(done, metrics)


def test_plain_lines_are_throttled_and_always_shown_at_the_total(clock):
  stream = io.StringIO()
  progress = Progress(100, label="train", every_s=10.0, stream=stream)
  _tick(progress, clock, 1.0, 1)  # too soon after the start
  _tick(progress, clock, 10.0, 5, {"loss": 0.123456, "lr": 3e-4, "eval_accuracy": 0.5})
  _tick(progress, clock, 12.0, 6)  # too soon after the last line
  _tick(progress, clock, 13.0, 100)  # the total: shown anyway
  clock.now = 20.0
  assert progress.close() == 20.0
  first, at_total, final = stream.getvalue().splitlines()
  # 5 steps in 10 s: 0.5 steps/s, 95 steps to go: 190 s.
  assert first == "train: step 5/100 loss=0.1235 eval_accuracy=0.5 0.5 steps/s eta=0:03:10"
  assert at_total.startswith("train: step 100/100 loss=0.1235 eval_accuracy=0.5 ")
  assert at_total.endswith(" eta=0:00:00")
  assert final == "train: done, 100 steps in 20.0 s, 5.0 steps/s"


def test_every_update_shown_with_every_s_zero_and_no_eta_without_a_total(clock):
  stream = io.StringIO()
  progress = Progress(None, label="count", unit="document", every_s=0.0, stream=stream)
  _tick(progress, clock, 2.0, 12_000)
  _tick(progress, clock, 4.0, 20_000)
  progress.close()
  assert stream.getvalue().splitlines() == [
    "count: document 12,000 6,000.0 documents/s",
    "count: document 20,000 5,000.0 documents/s",
    "count: done, 20,000 documents in 4.0 s, 5,000.0 documents/s",
  ]


def test_rate_and_eta_count_from_the_initial_step(clock):
  stream = io.StringIO()
  progress = Progress(1000, initial=500, every_s=0.0, stream=stream)
  _tick(progress, clock, 0.0, 500)  # nothing done yet: no rate, so no ETA
  _tick(progress, clock, 10.0, 600)
  assert stream.getvalue().splitlines() == [
    "step 500/1,000 0.0 steps/s eta=?",
    "step 600/1,000 10.0 steps/s eta=0:00:40",
  ]


def test_disabled_prints_nothing(clock):
  stream = io.StringIO()
  progress = Progress(10, every_s=0.0, stream=stream, enabled=False)
  _tick(progress, clock, 1.0, 10, {"loss": 1.0})
  clock.now = 2.0
  assert progress.close() == 2.0
  assert stream.getvalue() == ""


def test_tty_renders_a_tqdm_bar_with_headline_metrics():
  stream = TtyStream()
  progress = Progress(10, label="train", every_s=0.0, stream=stream)
  progress.update(3, {"loss": 1.23456, "lr": 0.1})
  progress.update(10, {"eval_loss": 2.0})
  assert progress.close() >= 0.0
  output = stream.getvalue()
  assert "\r" in output and "10/10" in output and "train" in output  # a redrawn bar
  assert "loss=1.235 eval_loss=2" in output and "lr=" not in output
