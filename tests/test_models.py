"""Layer specs, presets, layer names and the summary against the articles' numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens.errors import UserError
from convlens.layers import layer_table
from convlens.models import PRESETS, Flatten, build_model, count_params


def test_simple_summary_matches_the_articles_exactly():
    rows = layer_table(build_model("simple")).layers
    assert [r.name for r in rows] == ["conv1", "pool1", "conv2", "pool2", "conv3", "flatten", "logits"]
    assert [r.params for r in rows] == [320, 0, 18496, 0, 73856, 0, 11530]
    assert sum(r.params for r in rows) == 104202
    assert rows[4].output_shape == (128, 3, 3)
    # The articles: a pool1 node covers 4x4 pixels, conv2 8x8, pool2 10x10 and conv3 18x18.
    assert [r.field.size for r in rows[:5]] == [3, 4, 8, 10, 18]
    assert [r.field.jump for r in rows[:5]] == [1, 2, 2, 4, 4]
    # The 3x3 grid of conv3 fields, 4 px apart, spans 18 + 2*4 = 26 px: the outer pixel ring is never seen.
    assert rows[5].field.size == 26


@pytest.mark.parametrize(
    "name, total",
    [("simple", 104202), ("same-pad", 220234), ("deep5x5", 3274634), ("mlp", 101770), ("lenet5", 61706),
     ("simple-mlp", 104202 - 11530 + 1152 * 64 + 64 + 650)],
)
def test_preset_parameter_counts(name, total):
    assert count_params(build_model(name)) == total


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_maps_a_batch_to_ten_logits(name):
    assert build_model(name)(torch.rand(5, 1, 28, 28)).shape == (5, 10)


def test_layer_options_build_the_named_modules():
    m = build_model("conv8k3s2bnselu-avgpool2-conv4k3samenone-flatten-dropout0.3-dense16bn-dense10")
    assert list(dict(m.named_children())) == ["conv1", "pool1", "conv2", "flatten", "dropout1", "dense1", "logits"]
    assert m.conv1.conv.stride == (2, 2) and isinstance(m.conv1.bn, nn.BatchNorm2d) and isinstance(m.conv1.act, nn.SELU)
    assert isinstance(m.pool1, nn.AvgPool2d) and isinstance(m.conv2.act, nn.Identity)
    assert m.conv2.conv.padding == "same" and m.dropout1.p == pytest.approx(0.3)
    assert isinstance(m.dense1.bn, nn.BatchNorm1d) and isinstance(m.dense1.act, nn.ReLU)
    rows = layer_table(m).layers
    assert rows[0].output_shape == (8, 13, 13) and rows[1].output_shape == (8, 6, 6)


def test_conv_block_is_relu_of_its_convolution():
    torch.manual_seed(0)
    m = build_model("simple").eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(m.conv1(x), torch.relu(m.conv1.conv(x)))
    # Hand-set weights: a kernel with a single 1 at its centre copies the (cropped) input.
    with torch.no_grad():
        m.conv1.conv.weight.zero_()
        m.conv1.conv.weight[0, 0, 1, 1] = 1.0
        m.conv1.conv.bias.zero_()
    assert torch.equal(m.conv1(x)[:, 0], x[:, 0, 1:-1, 1:-1])


def test_num_classes_sets_the_logits():
    assert build_model("conv4k3-flatten-dense26", num_classes=26)(torch.rand(1, 1, 28, 28)).shape == (1, 26)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("conv32k3-pool2-flatten-dense10-convo", "must end with a dense layer"),
        ("conv32k3-blah-flatten-dense10", "cannot parse layer 'blah'"),
        ("conv32k3xyz-flatten-dense10", "unknown options 'xyz'"),
        ("flatten-conv32k3-dense10", "comes after flatten"),
        ("conv32k3-dense10", "needs a flatten layer"),
        ("conv32k3-flatten-dense7", "must be dense10"),
        ("conv32k30-flatten-dense10", "layer 'conv32k30' reduces the 28x28 input to nothing"),
        ("conv8k3-pool2-pool2-pool2-pool2-pool2-flatten-dense10", "layer 'pool2' reduces the 28x28 input to nothing"),
        ("conv8k3s2same-flatten-dense10", "same padding needs stride 1"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec, message):
    with pytest.raises(UserError, match=message):
        build_model(spec)


def test_flatten_hands_a_channels_last_input_its_gradient_channels_last_with_the_same_values():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(3, 8 * 3 * 3)
    grads = {}
    for flatten in (nn.Flatten(), Flatten()):
        pooled = nn.functional.max_pool2d(x.clone().requires_grad_(), 2)
        pooled.register_hook(lambda grad, kind=type(flatten): grads.setdefault(kind, grad))  # as the pool gets it
        (flatten(pooled) @ weight.T).square().sum().backward()
        assert torch.equal(flatten(pooled), pooled.flatten(1))  # channel-major order either way
    mine, theirs = grads[Flatten], grads[nn.Flatten]
    assert torch.equal(mine, theirs)
    assert mine.is_contiguous(memory_format=torch.channels_last) and not theirs.is_contiguous(
        memory_format=torch.channels_last)
