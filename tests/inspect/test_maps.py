"""Inspection on a hand-set model convlens did not build, where every expected value is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens.errors import UserError
from convlens.inspection.filters import apply_kernels, classic_kernels, conv_weight, kernel_norms
from convlens.inspection.hooks import capture
from convlens.inspection.maps import class_patterns, feature_maps, top_activations
from convlens.inspection.probe import nearest_centroid_accuracy
from convlens.layers import Field, layer_table
from convlens.models import build_model


class Tiny(nn.Module):
    """conv map 0 copies pixel (i, j); map 1 is its negative, so after the ReLU it never fires."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * 13 * 13, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 0, 0] = 1.0
            self.conv.weight[1, 0, 0, 0] = -1.0

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def dots(spec: list[tuple[int, int, float]]) -> torch.Tensor:
    """Return images (N, 1, 28, 28) that are black but for one pixel each: (row, col, value)."""
    x = torch.zeros(len(spec), 1, 28, 28)
    for n, (r, c, v) in enumerate(spec):
        x[n, 0, r, c] = v
    return x


def test_feature_maps_of_a_foreign_model_are_exact():
    x = torch.rand(3, 1, 28, 28)
    maps = feature_maps(Tiny(), x, ["relu", "pool"])
    assert maps["relu"].shape == (3, 2, 27, 27) and maps["pool"].shape == (3, 2, 13, 13)
    assert torch.equal(maps["relu"][:, 0], x[:, 0, :27, :27])
    assert maps["relu"][:, 1].abs().sum() == 0


def test_map_and_conv_layers_are_found_for_foreign_and_convlens_models():
    tiny = layer_table(Tiny(), (1, 28, 28))
    assert tiny.map_layers == ["conv", "pool"] and tiny.names() == ["conv", "pool", "fc"]
    assert tiny["fc"].kind == "logits" and tiny["conv"].output_shape == (2, 27, 27)
    simple = layer_table(build_model("simple"))
    assert simple.map_layers == ["conv1", "pool1", "conv2", "pool2", "conv3"]
    assert simple.convs == ["conv1", "conv2", "conv3"]
    assert simple["conv2"].pre_activation == "conv2.conv" and layer_table(build_model("fast"))["conv1"].pre_activation == "conv1.bn"


def test_hooks_are_removed_even_when_the_block_raises():
    model = Tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["conv", "pool"]) as out:
            model(torch.rand(1, 1, 28, 28))
            assert set(out) == {"conv", "pool"}
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_layer_names_the_layers_there_are():
    with pytest.raises(UserError, match=r"unknown layer 'conv9'; layers are: conv1, pool1, conv2"):
        feature_maps(build_model("simple"), torch.rand(1, 1, 28, 28), ["conv9"])


def test_class_patterns_means_and_dead_maps_are_exact():
    x = dots([(5, 5, 1.0), (5, 5, 0.5), (10, 20, 0.8), (0, 0, 0.0)])
    labels = torch.tensor([0, 0, 1, 2])
    p = class_patterns(Tiny(), x, labels, "relu", num_classes=3)
    assert p.mean_maps.shape == (3, 2, 27, 27)
    assert p.mean_maps[0, 0, 5, 5] == pytest.approx(0.75) and p.mean_maps[1, 0, 10, 20] == pytest.approx(0.8)
    assert p.mean_maps[0, 0].sum() == pytest.approx(0.75)
    assert p.mean_activation[0, 0] == pytest.approx(0.75 / 27**2)
    assert p.fire_rate.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    assert p.never_fires() == {0: [1], 1: [1], 2: [0, 1]}


def test_separation_is_cohens_d():
    x = dots([(1, 1, 0.2), (1, 1, 0.4), (1, 1, 0.6), (1, 1, 0.8)])
    p = class_patterns(Tiny(), x, torch.tensor([0, 0, 1, 1]), "relu", num_classes=2)
    # map 0 spatial means: 0.2/729 ... ; d = (0.3 - 0.7) / sd, sd = sqrt(0.02) on the 1/729 scale
    d = p.separation(0, 1)
    assert d[0].item() == pytest.approx(-0.4 / 0.02**0.5, rel=1e-4)
    assert d[1].item() == 0.0  # the dead map separates nothing


def test_top_activations_rank_images_and_locate_the_peak():
    x = dots([(3, 4, 0.2), (7, 9, 0.9), (1, 1, 0.5), (20, 2, 0.7)])
    top = top_activations(Tiny(), x, "relu", k=3, batch_size=3)  # two batches: the merge is tested too
    assert top.indices[0].tolist() == [1, 3, 2]
    assert top.values[0].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert top.positions[0].tolist() == [[7, 9], [20, 2], [1, 1]]
    assert top.values[1].tolist() == [0.0, 0.0, 0.0] and top.indices[1].tolist() == [0, 1, 2]  # ties keep order


def test_receptive_field_geometry_and_boxes():
    assert layer_table(Tiny(), (1, 28, 28))["pool"].field == Field(3, 2, 0)
    assert layer_table(build_model("simple"))["conv3"].field == Field(18, 4, 0)
    assert layer_table(build_model("same-pad"))["conv2"].field == Field(8, 2, -3)
    assert Field(18, 4, 0).box(2, 1, 28) == (8, 4, 26, 22)
    assert Field(8, 2, -3).box(0, 13, 28) == (0, 23, 5, 28)  # clipped to the image


def test_classic_kernels_and_learned_weights():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 14:] = 1.0  # a vertical edge: dark left, bright right
    out = apply_kernels(x, classic_kernels()[:2])
    assert out[0, 5, 12].item() == 4.0 and out[0, 5, 5].item() == 0.0  # sobel x fires on the edge
    assert out[1].abs().sum() == 0  # sobel y sees no horizontal edge
    w, b = conv_weight(Tiny(), "conv")
    assert kernel_norms(w).tolist() == [[1.0], [1.0]] and b is None
    with pytest.raises(UserError, match="not a convolution"):
        conv_weight(Tiny(), "pool")


def test_nearest_centroid_on_separable_features():
    train = torch.tensor([[0.0, 0], [0, 1], [10, 10], [10, 11]])
    test = torch.tensor([[1.0, 0], [9, 9]])
    y = torch.tensor([0, 0, 1, 1])
    assert nearest_centroid_accuracy(train, y, test, torch.tensor([0, 1]), 2) == 1.0
    assert nearest_centroid_accuracy(train, y, test, torch.tensor([1, 0]), 2) == 0.0


def test_a_transposed_convs_kernels_read_as_a_convs():
    """conv_weight gives a transposed conv's kernels as (out, in / groups, kh, kw): at stride 1, the transposed
    conv is the conv of the zero-padded input with those kernels flipped."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(8, 6, 3, groups=2, bias=False))
    weight, _ = conv_weight(model, "0")
    assert weight.shape == (6, 4, 3, 3)
    x = torch.randn(2, 8, 7, 7)
    expected = F.conv2d(F.pad(x, [2] * 4), weight.flip(2, 3), groups=2)
    assert torch.allclose(model(x), expected, atol=1e-5)
