"""Full-data checks: minutes, not seconds. `make test` runs them after the quick suite."""

from __future__ import annotations

import pytest

from convlens.config import RunConfig
from convlens.training import evaluate, train

pytestmark = pytest.mark.slow


def test_simple_reaches_98_5_percent_after_one_epoch_on_full_mnist(mnist):
    result = train(RunConfig().replace(model={"model": "simple"}, train={"epochs": 1}))
    metrics = evaluate(result.model, mnist.test_images, mnist.test_labels)
    print(f"simple, 1 epoch: test accuracy {metrics['accuracy']:.4f}, {result.history[0]['seconds']:.1f} s")
    assert metrics["accuracy"] >= 0.985
