"""Full-data checks: a minute or two, not seconds. `make test` runs them; `make test-fast` skips them."""

from __future__ import annotations

import pytest

from convlens.config import RunConfig
from convlens.jobs.probe import probe
from convlens.training import evaluate, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """`simple` trained for one epoch on the full MNIST training split, with the default fast recipe."""
    out = tmp_path_factory.mktemp("full") / "run"
    return train(RunConfig().replace(model={"model": "simple"}, train={"epochs": 1}), out=out)


def test_simple_reaches_98_5_percent_after_one_epoch_on_full_mnist(one_epoch_run, mnist):
    metrics = evaluate(one_epoch_run.model, mnist.test_images, mnist.test_labels)
    print(f"simple, 1 epoch: test accuracy {metrics['accuracy']:.4f}, {one_epoch_run.history[0]['seconds']:.1f} s")
    assert metrics["accuracy"] >= 0.985


def test_linear_probe_at_the_logits_matches_the_model(one_epoch_run):
    result = probe(one_epoch_run.run_dir, layers=["conv3", "logits"]).data["layers"]
    accuracy = evaluate(one_epoch_run.model, one_epoch_run.dataset.test_images, one_epoch_run.dataset.test_labels)["accuracy"]
    print(f"probe: conv3 {result['conv3']['linear']:.4f}, logits {result['logits']['linear']:.4f}, model {accuracy:.4f}")
    # A softmax regression on the logits can copy the model's own argmax, so it should land within
    # rounding of it; 0.3 points leaves room for the probe's 10,000-image fit.
    assert abs(result["logits"]["linear"] - accuracy) <= 0.003
    assert result["conv3"]["linear"] >= 0.97  # the conv part alone already separates the classes


@pytest.fixture(scope="module")
def three_epoch_run(tmp_path_factory):
    """`simple` trained for three epochs on full MNIST: the model issue 9's OIP quality target is set on."""
    out = tmp_path_factory.mktemp("full3") / "run"
    return train(RunConfig().replace(model={"model": "simple"}, train={"epochs": 3}), out=out)


def test_oips_beat_the_best_test_image_for_95_percent_of_maps_in_every_layer(three_epoch_run, mnist):
    from convlens.oip import best_test_activation, layer_oips
    from convlens.speed import images_to_device

    model = three_epoch_run.model
    x = images_to_device(mnist.test_images, three_epoch_run.model.conv1.conv.weight.device)
    for layer in ("conv1", "conv2", "conv3"):
        best, _ = best_test_activation(model, x, layer)
        oips = layer_oips(model, layer)
        share = (oips.activation[:, 0] >= best).float().mean().item()
        print(f"{layer}: {share:.1%} of maps beat the best test image, {oips.seconds:.2f} s")
        assert share >= 0.95, layer
        assert oips.fired.all(), layer  # no map left dead
