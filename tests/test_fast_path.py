"""The fast path: bf16 and layout switches keep predictions, augmentation is exact and seeded, recipes resolve."""

from __future__ import annotations

import pytest
import torch

from convlens.augment import augment, cutout
from convlens.bench import _row, format_table
from convlens.config import AUGMENTS, RECIPES, RunConfig
from convlens.training import predict, train


def easy_agreement(a, b, images) -> tuple[float, int]:
    """Return the share of images where two models agree, among those the first classifies with p > 0.9."""
    pa, pb = predict(a, images).softmax(1), predict(b, images).softmax(1)
    easy = pa.max(1).values > 0.9
    return (pa[easy].argmax(1) == pb[easy].argmax(1)).float().mean().item(), int(easy.sum())


def test_bf16_training_predicts_like_fp32_on_an_easy_batch(tiny_config):
    # bf16 keeps 8 bits of mantissa, so the two runs drift apart step by step and their weights are
    # not expected to match; what must hold is that bf16 does not silently break the model. On
    # images the fp32 model is sure of (p > 0.9), both must give the same class for at least 98%.
    cpu = tiny_config.replace(train={"device": "cpu"})  # CI's path; CUDA convs use TF32 even in "fp32"
    fp32 = train(cpu)
    bf16 = train(cpu.replace(train={"precision": "bf16"}))
    test_x, test_y = fp32.dataset.test_images, fp32.dataset.test_labels
    share, easy = easy_agreement(fp32.model, bf16.model, test_x)
    assert easy >= 200 and share >= 0.98
    accuracy = lambda m: (predict(m, test_x).argmax(1) == test_y).float().mean().item()  # noqa: E731
    assert abs(accuracy(fp32.model) - accuracy(bf16.model)) <= 0.03


def test_channels_last_and_nchw_train_the_same_model(tiny_config):
    # The layout changes which kernels run and so the order of float additions, not the arithmetic's
    # meaning: over 56 steps at lr 0.1 rounding differences grow to under 1% of each tensor's norm
    # (measured: 0.1-0.9%), and predictions stay the same.
    cpu = tiny_config.replace(train={"device": "cpu"})
    a = train(cpu)
    b = train(cpu.replace(train={"channels_last": False}))
    for (name, wa), wb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        if wa.is_floating_point():
            assert (wa - wb).norm() <= 0.02 * wa.norm(), name
    x = a.dataset.test_images
    assert (predict(a.model, x).argmax(1) == predict(b.model, x).argmax(1)).float().mean() >= 0.995


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_training_predicts_like_cpu_on_an_easy_batch(tiny_config):
    cpu = train(tiny_config.replace(train={"device": "cpu"}))
    gpu = train(tiny_config.replace(train={"device": "cuda"}))
    share, easy = easy_agreement(cpu.model, gpu.model.cpu(), cpu.dataset.test_images)
    assert easy >= 200 and share >= 0.98


def test_augment_none_is_the_identity_and_the_rest_are_seeded():
    x = torch.rand(16, 1, 28, 28)
    assert augment(x, "none", torch.Generator().manual_seed(0)) is x
    for kind in AUGMENTS[1:]:
        a = augment(x, kind, torch.Generator().manual_seed(1))
        b = augment(x, kind, torch.Generator().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b), kind
        assert not torch.equal(a, augment(x, kind, torch.Generator().manual_seed(2))), kind


def test_shift_moves_a_digit_by_at_most_two_pixels_and_keeps_its_ink():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a bar far from the border
    y = augment(x, "shift", torch.Generator().manual_seed(0))
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-4)  # bilinear resampling keeps mass inside
    grid = torch.arange(28.0)
    centre = lambda t: torch.stack([(t.sum(3) * grid).sum((1, 2)), (t.sum(2) * grid).sum((1, 2))], 1) / t.sum((1, 2, 3))[:, None]  # noqa: E731
    moved = (centre(y) - centre(x)).abs()
    assert moved.max() <= 2.0 + 1e-4 and moved.max() > 1.0


def test_flip_mirrors_about_half_the_images():
    x = torch.zeros(200, 1, 28, 28)
    x[:, :, 8:20, 4:10] = 1.0  # ink on the left only
    y = augment(x, "flip", torch.Generator().manual_seed(0))
    mirrored = (y[..., 14:].sum((1, 2, 3)) > y[..., :14].sum((1, 2, 3))).float().mean().item()
    assert 0.4 < mirrored < 0.6


def test_cutout_zeroes_at_most_one_square_per_image():
    x = torch.ones(500, 1, 28, 28)
    y = cutout(x, 8, torch.Generator().manual_seed(0))
    erased = (y == 0).sum((1, 2, 3))
    assert erased.max() == 64 and erased.min() >= 16  # a square of 8x8, clipped at the border to 4x4 at least
    assert cutout(x, 0, torch.Generator()) is x


def test_every_recipe_is_a_valid_config_and_the_presets_name_their_model():
    for name, sections in RECIPES.items():
        RunConfig().replace(**sections)  # raises on an invalid field or value
    assert RECIPES["fast"]["model"]["model"] == "fast-mlp"
    assert RECIPES["best-fashion"]["data"]["dataset"] == "fashion-mnist"


def test_bench_table_gives_time_to_99_against_the_plain_loop():
    baseline = _row("plain", "simple", 3, [40.0], [4000.0], [0.991], [40.0])
    fast = _row("fast", "fast", 2, [9.0, 10.0, 11.0], [1.0, 2.0, 3.0], [0.990, 0.989, 0.991], [9.0, None, 11.0])
    slow = _row("x", "simple", 1, [5.0, 5.0, 5.0], [1.0, 1.0, 1.0], [0.98, 0.991, 0.98], [None, 5.0, None])
    assert fast["time_to_99"] == 10.0 and fast["test_accuracy"] == 0.990 and fast["images_per_s"] == 2.0
    assert slow["time_to_99"] is None  # one seed of three reaching 99% is not reaching it
    table = format_table([baseline, fast, slow], baseline)
    assert "0.250" in table.splitlines()[3] and table.splitlines()[4].rstrip().endswith("-")


def test_a_recipe_sets_model_and_data_and_flags_given_win():
    from convlens.cli import build_parser
    from convlens.cli.train import config_from_args

    config, given = config_from_args(build_parser().parse_args(["train", "--recipe", "best-fashion", "--epochs", "1"]))
    assert (config.model.model, config.data.dataset, config.train.augment) == ("fashion-cnn3", "fashion-mnist", "flip")
    assert config.train.epochs == 1 and config.train.label_smoothing == 0.1 and given == ["train.epochs"]
