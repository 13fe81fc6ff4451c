"""Learning-rate schedules as pure functions of training progress.

A schedule is lr(t) for t in epochs (fractional, advanced every step). Being stateless, it needs no
scheduler object in the checkpoint: a resumed run computes the same lr at the same step.
"""

from __future__ import annotations

import math

from .config import TrainConfig

ONECYCLE_START_DIV = 25.0  # OneCycle starts at lr / 25, as torch's OneCycleLR does


def lr_at(t: float, c: TrainConfig) -> float:
    """Return the learning rate after t epochs of training under config c."""
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "step":
        return c.lr * c.gamma ** math.floor(t / c.step_every)
    if c.schedule == "exponential":
        return c.lr * c.gamma**t
    if c.schedule == "cosine":
        return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t / c.epochs))
    if c.schedule == "onecycle":
        rise = c.warmup * c.epochs
        if t < rise:  # linear warm-up from lr/25 to lr
            start = c.lr / ONECYCLE_START_DIV
            return start + (c.lr - start) * t / rise
        return c.lr * max(0.0, (c.epochs - t) / (c.epochs - rise))  # then linearly down to 0
    raise ValueError(f"unknown schedule {c.schedule}")
