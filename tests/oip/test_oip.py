"""OIP searches: exact optima on hand-set models, the dead-map path, repeatability, and the oip command."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from convlens.cli import main
from convlens.models import build_model
from convlens.oip import Ascent, class_oips, dead_reason, layer_oips, multiscale_noise
from convlens.oip.ascent import total_variation


def one_conv(kernel: torch.Tensor, bias: float, act: str = "relu"):
    """A model whose only conv has one 3x3 kernel, hand-set."""
    model = build_model(f"conv1k3{act}-flatten-dense10")
    with torch.no_grad():
        model.conv1.conv.weight.copy_(kernel.view(1, 1, 3, 3))
        model.conv1.conv.bias.fill_(bias)
    return model.eval()


KERNEL = torch.tensor([[0.9, -0.4, 0.3], [-0.7, 0.5, -0.2], [0.6, -0.8, 0.4]])


def test_linear_objective_reaches_the_sign_pattern_of_the_summed_kernel_weights():
    # Without an activation the map's mean is linear in the pixels: pixel (i, j) weighs the sum of the
    # kernel weights over every position that covers it. Under the [0, 1] clamp the optimum is 1 where
    # that sum is positive and 0 where it is negative.
    model = one_conv(KERNEL, bias=0.1, act="none")
    coefficient = torch.nn.functional.conv_transpose2d(torch.ones(1, 1, 26, 26), KERNEL.view(1, 1, 3, 3))[0, 0]
    assert (coefficient.abs() > 0.05).all()  # every pixel has a definite sign
    oip = layer_oips(model, "conv1", ascent=Ascent(steps=200))
    expected = (coefficient > 0).float()
    assert torch.equal(oip.images[0, 0, 0], expected)
    optimum = 0.1 + (coefficient.clamp(min=0).sum() / 26**2).item()
    assert oip.activation[0, 0].item() == pytest.approx(optimum, abs=1e-5)


def test_centre_objective_reaches_the_kernel_sign_pattern_inside_the_receptive_field():
    model = one_conv(KERNEL, bias=0.1)
    oip = layer_oips(model, "conv1", objective="center", ascent=Ascent(steps=100))
    patch = oip.images[0, 0, 0, 13:16, 13:16]  # the centre unit (13, 13) of the 26x26 map sees these pixels
    assert torch.equal(patch, (KERNEL > 0).float())
    assert oip.activation[0, 0].item() == pytest.approx(0.1 + KERNEL.clamp(min=0).sum().item(), abs=1e-5)


def test_a_map_silent_for_the_whole_start_image_fires_through_its_pre_activation():
    # Negative everywhere but the centre: on noise of mean 0.5 the pre-activation is about -3 at every
    # position, so the ReLU passes no gradient at all; only isolated bright dots make it fire.
    kernel = -torch.ones(3, 3)
    kernel[1, 1] = 1.0
    model = one_conv(kernel, bias=-0.5)
    oip = layer_oips(model, "conv1", ascent=Ascent(steps=60, soft=0.0))  # exact gradients: the pre path alone
    assert oip.start[0, 0].item() == 0.0 and not oip.fired_from_start[0]
    assert oip.activation[0, 0].item() > 0.0 and oip.fired[0]


def test_a_map_that_cannot_fire_is_reported_with_a_proof():
    model = one_conv(KERNEL, bias=-5.0)  # bias + positive weights = -2.3: no input in [0, 1] can turn it on
    oip = layer_oips(model, "conv1", ascent=Ascent(steps=20))
    assert not oip.fired[0]
    reason = dead_reason(model, "conv1", 0, oip.pre_final[0, 0].item(), oip.steps, 1)
    assert reason.startswith("dead for every input") and "-2.3" in reason


def test_every_oip_of_a_trained_model_beats_its_start(trained_run):
    from convlens.runs import load_run

    model = load_run(trained_run).model
    for layer in ("conv1", "conv2", "conv3"):
        oip = layer_oips(model, layer, ascent=Ascent(steps=48))
        fired = oip.fired
        assert (oip.activation[fired] > oip.start[fired]).all(), layer
        assert fired.float().mean() >= 0.95, layer  # nearly every map fires, most from a silent start at conv3


def test_the_same_seed_gives_the_same_oips_and_another_seed_does_not(trained_run):
    from convlens.runs import load_run

    model = load_run(trained_run).model
    a = layer_oips(model, "conv2", maps=[0, 5], seed=3, ascent=Ascent(steps=20))
    b = layer_oips(model, "conv2", maps=[0, 5], seed=3, ascent=Ascent(steps=20))
    c = layer_oips(model, "conv2", maps=[0, 5], seed=4, ascent=Ascent(steps=20))
    assert torch.equal(a.images, b.images) and torch.equal(a.activation, b.activation)
    assert not torch.equal(a.images, c.images)
    # A map's OIP does not depend on which other maps were searched with it.
    alone = layer_oips(model, "conv2", maps=[5], seed=3, ascent=Ascent(steps=20))
    assert torch.allclose(alone.images[0], a.images[1], atol=1e-5)


def test_multiscale_noise_is_seeded_in_range_and_correlated_over_several_pixels():
    a, b = multiscale_noise(64, seed=1), multiscale_noise(64, seed=1)
    assert a.shape == (64, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    centred = a - a.mean((2, 3), keepdim=True)
    lag4 = (centred[..., :, 4:] * centred[..., :, :-4]).mean() / centred.pow(2).mean()
    assert lag4 > 0.1  # about 0.19: blobs span several pixels; pixel-only noise gives about 0
    pixel_only = multiscale_noise(64, seed=1, scales=(1,))
    c = pixel_only - pixel_only.mean((2, 3), keepdim=True)
    assert abs((c[..., :, 4:] * c[..., :, :-4]).mean() / c.pow(2).mean()) < 0.05


def test_total_variation_counts_neighbour_differences():
    x = torch.zeros(1, 1, 4, 4)
    x[..., :, 2:] = 1.0  # one vertical edge, 4 rows long
    assert total_variation(x).item() == 4.0


def test_class_oips_raise_their_logit_above_every_test_image(trained_run, small_mnist):
    from convlens.data import load_dataset
    from convlens.oip import best_test_activation
    from convlens.runs import load_run
    from convlens.speed import images_to_device

    model = load_run(trained_run).model
    x = images_to_device(load_dataset(small_mnist).test_images, torch.device("cpu"))
    best, _ = best_test_activation(model, x, None)
    oip = class_oips(model, [4, 9], starts=2, ascent=Ascent(steps=48))
    assert oip.images.shape == (2, 2, 1, 28, 28)
    assert (oip.activation.amax(1) > best[[4, 9]]).all()
    assert model(oip.best).argmax(1).tolist() == [4, 9]  # each OIP is classified as its class
    assert oip.similarity().shape == (2,) and (oip.similarity() < 1).all()


def test_oip_command_writes_json_tensors_and_gallery_and_merges_layers(trained_run, tmp_path):
    out = tmp_path / "oip"
    main(["oip", str(trained_run), "--layer", "conv1", "--maps", "0-3", "--steps", "20", "--out", str(out)])
    main(["oip", str(trained_run), "--layer", "conv3", "--maps", "7,9", "--steps", "20", "--starts", "2", "--out", str(out)])
    report = json.loads((out / "oip.json").read_text())
    assert [(e["layer"], e["map"]) for e in report["maps"]] == [("conv1", m) for m in range(4)] + [("conv3", 7), ("conv3", 9)]
    keys = {"layer", "map", "objective", "activation", "best_test_activation", "ratio", "fired_from_start", "steps", "seconds"}
    assert all(keys <= set(e) for e in report["maps"])
    e = report["maps"][0]
    assert e["ratio"] == pytest.approx(e["activation"] / e["best_test_activation"])
    assert set(report["layers"]) == {"conv1", "conv3"} and report["layers"]["conv3"]["settings"]["starts"] == 2
    tensors = load_file(str(out / "oip_conv3.safetensors"))
    assert tensors["images"].shape == (2, 2, 1, 28, 28) and tensors["index"].tolist() == [7, 9]
    assert (out / "oip_conv1.png").stat().st_size > 1000 and (out / "oip_conv3_starts.png").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--layer", "pool1"], "OIPs are searched for conv layers"),
    (["--layer", "conv1", "--maps", "0-99"], "map 99 is out of range: conv1 has maps 0-31"),
    (["--maps", "a-b"], "must be indices and ranges"),
    (["--logits", "--layer", "conv1"], "--logits searches class OIPs"),
    (["--classes", "4,9"], "--classes goes with --logits"),
    (["--logits", "--classes", "4,12"], "unknown class '12'"),
    (["--starts", "0"], "--starts and --steps must be at least 1"),
])
def test_oip_bad_input_is_one_clear_error(trained_run, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["oip", str(trained_run), "--out", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "oip.json").exists()


def test_a_search_too_big_for_memory_runs_in_batches_and_finds_the_same_oips(monkeypatch):
    """Searches split to bound the activations a step keeps give each map the OIPs of one batched search."""
    from convlens.oip import search

    torch.manual_seed(0)
    model = build_model("simple")
    ascent = Ascent(steps=12, jitter=1)
    whole = layer_oips(model, "conv2", maps=list(range(10)), starts=2, ascent=ascent)
    per_image = sum(torch.Size(r.output_shape).numel() for r in search.layer_table(model).layers[:3]) * 12
    monkeypatch.setattr(search, "MEMORY_BUDGET", per_image * 3)  # three searches a batch: seven batches
    assert search._batch_size(search.layer_table(model), "conv2", 20) == 3
    split = layer_oips(model, "conv2", maps=list(range(10)), starts=2, ascent=ascent)
    torch.testing.assert_close(split.images, whole.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(split.activation, whole.activation, atol=1e-5, rtol=1e-5)
