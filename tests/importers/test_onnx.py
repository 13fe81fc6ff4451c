"""ONNX models exported by PyTorch's own exporter, against onnxruntime and against the exporting module."""

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
from unsupported import PixelShuffle
from convlens.errors import UserError
from convlens.importers import import_file
from convlens.inspection.maps import feature_maps
from convlens.jobs.import_model import import_model


class Exported(nn.Module):
    """What exporters meet in small CNNs: batch norm, a residual sum, tanh, a strided conv, leaky ReLU,
    average pooling, x.view(x.size(0), -1), a hidden layer and a softmax at the end."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 6 * 6, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = x + torch.tanh(self.conv2(x))
        x = self.pool(F.leaky_relu(self.down(x)))
        return F.softmax(self.out(F.relu(self.fc(x.view(x.size(0), -1)))), 1)


def export(module: nn.Module, path, shape=(1, 28, 28)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(module.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    module = Exported().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    return module, export(module, tmp_path_factory.mktemp("onnx") / "exported.onnx")


def test_an_onnx_model_agrees_with_onnxruntime_and_with_the_exporting_module(exported):
    module, path = exported
    model = import_file(path).model
    x = torch.rand(7, 1, 28, 28)
    runtime = onnxruntime.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ours = model(x).softmax(1)
        assert np.abs(ours.numpy() - runtime).max() <= 1e-5
        assert torch.allclose(ours, module(x), atol=1e-5)
        expected = F.relu(module.bn(module.conv1(x)))
    assert torch.allclose(feature_maps(model, x, ["conv1"])["conv1"], expected, atol=1e-5)  # after its ReLU


def test_an_onnx_file_imports_through_the_cli(exported, tmp_path, capsys):
    _, path = exported
    main(["import", str(path), "--out", str(tmp_path / "run")])
    assert "imported exported.onnx (onnx" in capsys.readouterr().out
    graph = json.loads((tmp_path / "run" / "graph.json").read_text())
    assert [n["name"] for n in graph["nodes"] if n["op"] == "conv"] == ["conv1", "conv2", "down"]
    main(["top", str(tmp_path / "run"), "--layer", "down", "--k", "2"])
    assert json.loads((tmp_path / "run" / "top" / "top_down.json").read_text())["receptive_field"]["size"] == 7


def test_unsupported_operators_and_damaged_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"operator DepthToSpace .* is not supported; convlens imports Conv"):
        import_model(export(PixelShuffle(), tmp_path / "up.onnx"), "mnist", tmp_path / "run")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes((tmp_path / "up.onnx").read_bytes()[:200])
    with pytest.raises(UserError, match="is not a readable ONNX model"):
        import_model(damaged, "mnist", tmp_path / "run")
    assert not (tmp_path / "run").exists()
