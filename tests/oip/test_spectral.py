"""Lucid's parameterisation for colour OIPs: it is Lucent's image function exactly, its colours move together,
its transforms keep the model's input size and repeat with the seed, and a spectral search raises each map."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from convlens.errors import UserError
from convlens.importers import import_module
from convlens.oip import Ascent, layer_oips
from convlens.oip.ascent import image_style
from convlens.oip.spectral import Spectral
from convlens.oip.transforms import RandomRotate, robust


def colour_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, 2), nn.ReLU(), nn.Conv2d(8, 8, 3, 2), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def test_the_style_follows_the_input_unless_asked():
    assert image_style(Ascent(), (3, 64, 64)) == "spectral"
    assert image_style(Ascent(), (1, 28, 28)) == image_style(Ascent(), (3, 32, 32)) == "pixels"
    assert image_style(Ascent(image="pixels"), (3, 224, 224)) == "pixels"
    with pytest.raises(UserError, match="image 'fourier' is not one of auto, pixels, spectral"):
        image_style(Ascent(image="fourier"), (3, 64, 64))


def test_a_zero_spectrum_is_mid_grey_and_one_channel_moves_all_three_colours():
    spectral = Spectral((3, 32, 32))
    parameters = torch.randn(1, 3, 32, 17, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(spectral.image(torch.zeros_like(parameters)), torch.full((1, 3, 32, 32), 0.5))
    only_first = parameters.clone()
    only_first[:, 1:] = 0
    image = spectral.image(only_first)[0].flatten(1)
    correlation = torch.corrcoef(image)
    assert (correlation > 0.99).all()  # the first decorrelated axis is brightness: every channel follows it


def test_the_spectral_image_is_lucents_on_the_same_parameters():
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Normalize = None
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision")).transforms = transforms
    sys.modules.setdefault("torchvision.transforms", transforms)
    param = pytest.importorskip("lucent.optvis.param", reason="Lucent is a benchmark-only install (bench/oip_lucent.py)")
    params, image_f = param.image(48, fft=True, decorrelate=True)
    ours = Spectral((3, 48, 48))
    with torch.no_grad():
        assert torch.allclose(image_f(), ours.image(params[0]), atol=1e-6)  # Lucent's own random start


def test_the_spectrum_of_an_image_gives_that_image_back():
    images = torch.rand(2, 3, 40, 40) * 0.9 + 0.05
    spectral = Spectral((3, 40, 40))
    assert torch.allclose(spectral.image(spectral.parameters_of(images)), images, atol=1e-5)


def test_the_transforms_keep_the_size_and_repeat_with_the_seed():
    x = torch.rand(2, 3, 80, 80)
    outputs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(3)
        y = x
        for transform in robust(80, generator):
            y = transform(y)
        outputs.append(y)
    assert outputs[0].shape == x.shape and torch.equal(outputs[0], outputs[1])
    still = RandomRotate([0.0], torch.Generator())(x)
    assert torch.allclose(still, x, atol=1e-5)


def test_a_spectral_search_raises_each_maps_activation_above_its_start():
    model = import_module(colour_net(), (3, 64, 64)).model
    oips = layer_oips(model, "layer_4", maps=list(range(8)), ascent=Ascent(steps=48))  # auto: spectral (64 px colour)
    reached, start = oips.activation[:, 0], oips.start[:, 0]
    assert (reached >= start).all() and (reached[start > 0] > start[start > 0]).all()
    assert reached.mean() > 1.1 * start.mean()
    assert oips.images.min() > 0 and oips.images.max() < 1  # the sigmoid's open interval, never clamped
    again = layer_oips(model, "layer_4", maps=[3], ascent=Ascent(steps=48))
    assert (again.images[0] - oips.images[3]).abs().max() < 1e-5  # nor on its batch-mates (but float sums: not bitwise)
