"""The nets people bring (nets.py: torchvision's ResNet-18, MobileNetV2, SqueezeNet 1.1, ConvNeXt, a decoder's
upsampling layers and PyTorch's MNIST example), saved by the real exporters (torch.export, ONNX through TorchScript and dynamo, opsets 13 and 17),
agree with the module and with onnxruntime on real digits; receptive fields are exact through branches.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens.cli import main
from convlens.importers import import_file, import_module
from convlens.layers import layer_table
from convlens.errors import UserError
from nets import ConvNeXt, Decoder, MnistExample, MobileNetV2, SqueezeNet, resnet18, with_trained_statistics

NETS = {"resnet18": resnet18, "mobilenetv2": MobileNetV2, "squeezenet": SqueezeNet, "decoder": Decoder}
SAVERS = ["pt2", "onnx-torchscript-13", "onnx-dynamo-17"]
COLOUR = (3, 64, 64)  # small enough for 2 cores, large enough for every stride of the three nets


def save(module: nn.Module, shape: tuple[int, int, int], how: str, folder) -> str:
    """Save a module as its users would: torch.export.save, or torch.onnx.export with that exporter and opset
    (a batch of any size; "-batch1" for one image, as a net the dynamo exporter cannot make dynamic must be)."""
    example = (torch.zeros(1, *shape),)
    if how == "pt2":
        path = folder / "model.pt2"
        torch.export.save(torch.export.export(module, example), path)
        return str(path)
    _, exporter, opset, *fixed = how.split("-")
    path = folder / f"model-{exporter}-{opset}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each exporter announces deprecations and fallbacks
        if exporter == "dynamo":
            torch.onnx.export(module, example, str(path), dynamo=True, opset_version=int(opset), input_names=["x"],
                              dynamic_shapes=None if fixed else ({0: torch.export.Dim("batch", max=1024)},))
        else:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=int(opset), input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
    return str(path)


def digits(mnist, shape: tuple[int, int, int], count: int = 8) -> torch.Tensor:
    """Real test digits as the model takes them: scaled to [0, 1], resized, each channel a different shade."""
    x = mnist.test_images[:count].float().div(255).unsqueeze(1)
    x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False) if shape[1:] != x.shape[2:] else x
    return torch.cat([x * (1.0 - 0.2 * k) for k in range(shape[0])], 1)


def assert_agrees(ours: torch.Tensor, reference: np.ndarray | torch.Tensor) -> None:
    reference = torch.as_tensor(reference)
    assert (ours - reference).abs().max().item() <= 1e-4 * max(1.0, reference.abs().max().item())
    assert torch.equal(ours.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("how", SAVERS)
@pytest.mark.parametrize("net", NETS)
def test_a_torchvision_style_net_agrees_with_its_module_and_onnxruntime(net, how, mnist, tmp_path):
    torch.manual_seed(0)
    module = with_trained_statistics(NETS[net]())
    path = save(module, COLOUR, how, tmp_path)
    imported = import_file(path)
    x = digits(mnist, COLOUR)
    with torch.no_grad():
        ours, theirs = imported.model(x), module(x)
    assert_agrees(ours, theirs)
    if path.endswith(".onnx"):
        assert_agrees(ours, onnxruntime.InferenceSession(path).run(None, {"x": x.numpy()})[0])
    convs = [n for n in imported.graph["nodes"] if n["op"] == "conv"]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in module.modules())  # each conv one layer, none lost
    if net == "mobilenetv2":  # depthwise convolutions kept as such, ReLU6 as clip(0, 6)
        assert any(n["groups"] == n["in"] == n["out"] > 1 for n in convs)
        assert {n.get("activation") for n in convs} >= {"clip(0.0,6.0)"}


@pytest.mark.parametrize("how", ["pt2", "onnx-torchscript-17", "onnx-dynamo-17-batch1"])
def test_convnext_opens_with_its_channels_last_layer_norms_and_layer_scales(how, mnist, tmp_path):
    """torchvision's ConvNeXt: LayerNorm and Linear between permutes become channel norms and 1x1 convs, the
    layer scale a scale per channel; the dynamo exporter's pooling (ReduceMean, then an as_strided Gather) too."""
    torch.manual_seed(0)
    module = with_trained_statistics(ConvNeXt())
    imported = import_file(save(module, COLOUR, how, tmp_path))
    x = digits(mnist, COLOUR)
    with torch.no_grad():
        assert_agrees(imported.model(x), module(x))
    ops = [n["op"] for n in imported.graph["nodes"]]
    assert ops.count("layernorm") == 10 and ops.count("scale") == 5 and "dense" in ops
    pointwise = [n for n in imported.graph["nodes"] if n["op"] == "conv" and n["kernel"] == [1, 1]]
    assert len(pointwise) == 10


def test_a_layer_norm_spelled_out_below_opset_17_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"operator ReduceMean .*a LayerNorm exported below opset 17\? export with "
                                        r"opset_version=17"):
        import_file(save(ConvNeXt(), COLOUR, "onnx-torchscript-13", tmp_path))


@pytest.mark.parametrize("how", ["pt2", "onnx-torchscript-13", "onnx-torchscript-17", "onnx-dynamo-13",
                                 "onnx-dynamo-17"])
def test_pytorchs_mnist_example_opens_with_its_log_softmax_as_logits(how, mnist, tmp_path):
    torch.manual_seed(0)
    module = MnistExample().eval()
    imported = import_file(save(module, (1, 28, 28), how, tmp_path))
    x = (digits(mnist, (1, 28, 28), 64) - 0.1307) / 0.3081  # the example's own normalisation
    with torch.no_grad():
        assert_agrees(F.log_softmax(imported.model(x), 1), module(x))
    names = [n["name"] for n in imported.graph["nodes"] if n["op"] in ("conv", "dense")]
    # Named after the module, where the file says which: the dynamo exporter writes opset 18 and converts it
    # down to 17 with onnx's C API, which drops the name scopes, so only its node names are left.
    assert names == (["node_conv2d", "node_conv2d_1", "node_linear", "node_linear_1"] if how == "onnx-dynamo-17"
                     else ["conv1", "conv2", "fc1", "fc2"])


def test_the_mnist_example_imports_through_the_cli_with_its_normalisation(mnist, tmp_path, capsys):
    torch.manual_seed(0)
    path = save(MnistExample().eval(), (1, 28, 28), "onnx-torchscript-17", tmp_path)
    main(["import", path, "--dataset", "mnist", "--mean", "0.1307", "--std", "0.3081", "--out", str(tmp_path / "run")])
    assert "imported model-torchscript-17.onnx" in capsys.readouterr().out
    graph = json.loads((tmp_path / "run" / "graph.json").read_text())
    assert graph["nodes"][0]["op"] == "affine" and graph["nodes"][-1]["name"] == "fc2"


class SpelledOut(nn.Module):
    """Arithmetic with numbers, as exporters and hand-written forwards spell activations out: GELU as
    x * 0.5 * (1 + erf(x / sqrt 2)) in ONNX before opset 20, a sigmoid rescaled to [-1, 1], 3 - x / 4, a root of
    a square."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)

    def forward(self, x):
        x = torch.sigmoid(F.gelu(self.conv(x))) * 2.0 - 1.0
        return self.fc(torch.sqrt((3.0 - x / 4.0).pow(2) + 1.0).flatten(1))


@pytest.mark.parametrize("how", ["pt2", "onnx-torchscript-13", "onnx-dynamo-17"])
def test_arithmetic_with_numbers_and_erf_open_exactly(how, mnist, tmp_path):
    torch.manual_seed(0)
    module = SpelledOut().eval()
    imported = import_file(save(module, (1, 28, 28), how, tmp_path))
    x = digits(mnist, (1, 28, 28), 64)
    with torch.no_grad():
        assert_agrees(imported.model(x), module(x))
    if how == "onnx-torchscript-13":  # GELU came as Div, Erf, Add, Mul, Mul
        assert {"affine", "activation", "mul"} <= {n["op"] for n in imported.graph["nodes"]}


class Normed(nn.Module):
    """Group and instance norm, as style-transfer and small-batch nets use them."""

    def __init__(self):
        super().__init__()
        self.conv1, self.gn = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.conv2, self.inorm = nn.Conv2d(16, 16, 3, stride=2), nn.InstanceNorm2d(16, affine=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.gn(self.conv1(x)))
        x = F.relu(self.inorm(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("how", ["pt2", "onnx-torchscript-13", "onnx-dynamo-17"])
def test_group_and_instance_norms_open_from_every_saver(how, mnist, tmp_path):
    """ONNX spells GroupNorm as Reshape to (N, groups, -1), InstanceNormalization, Reshape back, Mul, Add."""
    torch.manual_seed(0)
    module = Normed().eval()
    with torch.no_grad():
        for norm in (module.gn, module.inorm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    x = digits(mnist, (3, 32, 32), 16)
    imported = import_file(save(module, (3, 32, 32), how, tmp_path))
    with torch.no_grad():
        assert_agrees(imported.model(x), module(x))
    assert [n.get("groups") for n in imported.graph["nodes"] if n["op"] == "groupnorm"] == [4, 16]


class Branches(nn.Module):
    """Two paths of different reach joined twice, with padded pools and a dilated conv, no saturating activations:
    every input pixel inside a unit's receptive field moves it, and none outside does."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.wide = nn.Conv2d(4, 4, 5, padding=4, dilation=2)
        self.pool = nn.AvgPool2d(3, 2, padding=1)
        self.narrow = nn.Conv2d(4, 4, 1, stride=2)
        self.head = nn.Conv2d(8, 8, 3, stride=2)

    def forward(self, x):
        x = self.stem(x)
        joined = torch.cat([self.pool(self.wide(x)), self.narrow(x)], 1)
        return self.head(joined) + F.avg_pool2d(joined, 3, 2)


def test_receptive_fields_through_branches_are_exact():
    torch.manual_seed(0)
    model = import_module(Branches(), (1, 48, 48)).model
    table = layer_table(model)
    for layer in table:
        if not layer.is_map or layer.output_shape[1] < 3:
            continue
        x = torch.rand(1, 1, 48, 48, requires_grad=True)
        row = col = layer.output_shape[1] // 2
        captured = {}
        handle = getattr(model, layer.name).register_forward_hook(lambda m, i, o: captured.update(out=o))
        model(x)
        handle.remove()
        captured["out"][0, :, row, col].sum().backward()
        rows, cols = np.nonzero(x.grad[0, 0].numpy())
        top, left, bottom, right = layer.field.box(row, col, 48)
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (top, left, bottom, right), layer.name
