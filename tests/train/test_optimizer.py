import jax
import jax.numpy as jnp
import pytest

from jaxlab.train.optimizer import (
  AdamWSettings,
  FeedbackAdamSettings,
  build_feedback_optimizer,
  build_optimizer,
  learning_rate_schedule,
)


def test_theta_learning_rate_is_a_tenth_and_decays_linearly():
  params = {"w": jnp.zeros(3), "theta": jnp.zeros(3)}
  tx, schedule = build_feedback_optimizer(
    FeedbackAdamSettings(lr=1e-2), total_steps=4, learns_theta=True
  )
  grads = {"w": jnp.ones(3), "theta": jnp.ones(3)}
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  assert float(updates["w"][0]) == pytest.approx(-1e-2, rel=1e-4)
  assert float(updates["theta"][0]) == pytest.approx(-1e-3, rel=1e-4)
  assert float(schedule(2)) == pytest.approx(5e-3) and float(schedule(4)) == 0.0


def test_frozen_theta_gets_no_update():
  params = {"w": jnp.zeros(3), "theta": jnp.zeros(3)}
  tx, _ = build_feedback_optimizer(FeedbackAdamSettings(), total_steps=4, learns_theta=False)
  grads = {"w": jnp.ones(3), "theta": jnp.ones(3)}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(updates["theta"][0]) == 0.0 and float(updates["w"][0]) < 0


def test_warmup_then_cosine_reaches_the_end_fraction():
  schedule = learning_rate_schedule(
    AdamWSettings(lr=1.0, warmup_steps=10, end_lr_fraction=0.1), total_steps=110
  )
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(110)) == pytest.approx(0.1)


@pytest.mark.parametrize(
  "settings,message",
  [
    (AdamWSettings(name="sgd"), "unknown optimizer.name 'sgd'"),
    (AdamWSettings(decay="step"), "unknown optimizer.decay 'step'"),
    (AdamWSettings(lr=-1.0), "optimizer.lr must be positive, got -1.0"),
  ],
)
def test_bad_settings_are_one_line_errors(settings, message):
  with pytest.raises(ValueError, match=message):
    build_optimizer(settings, 10)
