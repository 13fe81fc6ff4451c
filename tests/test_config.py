"""Config round trips, validation, recipes and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from convlens.config import RECIPES, RunConfig, TrainConfig
from convlens.errors import UserError
from convlens.schedules import lr_at


def test_config_round_trips_through_a_dict():
    c = RunConfig().replace(train={"lr": 0.3, "schedule": "cosine"}, data={"val_size": 0})
    assert RunConfig.from_dict(c.to_dict()) == c
    assert RunConfig.from_dict({}) == RunConfig()


def test_unknown_config_keys_are_rejected():
    with pytest.raises(UserError, match=r"'train' has unknown keys \['lrate'\]"):
        RunConfig.from_dict({"train": {"lrate": 0.1}})


@pytest.mark.parametrize(
    "train, message",
    [({"lr": 0}, "^lr must be positive"), ({"optimizer": "lbfgs"}, "^optimizer must be one of"),
     ({"epochs": 0}, "^epochs"), ({"momentum": 1.0}, "^momentum"), ({"gamma": 1.5}, "^gamma"),
     ({"precision": "fp16"}, "^precision"), ({"warmup": 1.0}, "^warmup"), ({"batch_size": 0}, "^batch_size")],
)
def test_bad_values_name_their_setting(train, message):
    with pytest.raises(UserError, match=message):
        RunConfig().replace(train=train)


def test_seed_recipe_is_the_articles_fp32_sgd_batch_64():
    c = RunConfig().replace(**RECIPES["seed"]).train
    assert (c.optimizer, c.batch_size, c.precision, c.schedule, c.momentum) == ("sgd", 64, "fp32", "step", 0.9)
    assert c.l2 > 0 and c.weight_decay == 0


def _sched(**kw) -> TrainConfig:
    return TrainConfig(**({"epochs": 4, "lr": 0.1} | kw))


def test_constant_step_and_exponential_schedules():
    assert lr_at(3.7, _sched(schedule="constant")) == 0.1
    step = _sched(schedule="step", step_every=2.0, gamma=0.5)
    assert [lr_at(t, step) for t in (0, 1.99, 2.0, 3.5, 4.0)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert lr_at(2.0, _sched(schedule="exponential", gamma=0.5)) == pytest.approx(0.025)
    assert lr_at(0.5, _sched(schedule="exponential", gamma=0.25)) == pytest.approx(0.05)


def test_cosine_runs_from_lr_to_min_lr():
    c = _sched(schedule="cosine", min_lr=0.01)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(2, c) == pytest.approx(0.055)
    assert lr_at(4, c) == pytest.approx(0.01)


def test_onecycle_rises_linearly_then_falls_to_zero():
    c = _sched(schedule="onecycle", warmup=0.25)  # peak after 1 of 4 epochs
    assert lr_at(0, c) == pytest.approx(0.004)
    assert lr_at(0.5, c) == pytest.approx((0.004 + 0.1) / 2)
    assert lr_at(1, c) == pytest.approx(0.1)
    assert lr_at(2.5, c) == pytest.approx(0.05)
    assert lr_at(4, c) == 0.0
    assert all(lr_at(t / 10, c) >= 0 and not math.isnan(lr_at(t / 10, c)) for t in range(41))
