"""PyTorch models through torch.export: modules with functional ReLUs, residual additions, strided convs, colour."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from conftest import mnist_32
from convlens.cli import main
from unsupported import PixelShuffle
from convlens.errors import UserError
from convlens.importers import import_module
from convlens.inspection.maps import feature_maps
from convlens.jobs.import_model import import_model
from convlens.jobs.oip import layer_oip
from convlens.oip import multiscale_noise
from convlens.runs import load_run


class Residual(nn.Module):
    """ReLUs written as functions, a residual addition, a strided conv, batch norm, dropout."""

    def __init__(self, channels: int = 1, side: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16 * ((side - 3) // 2 + 1 >> 1) ** 2, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = x + F.relu(self.conv2(x))
        x = self.pool(F.relu(self.down(x)))
        return self.fc(self.drop(torch.flatten(x, 1)))


def trained_like(module: nn.Module) -> nn.Module:
    """Give batch norm statistics that are not the identity, so importing them wrongly shows."""
    torch.manual_seed(0)
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    return module.eval()


def test_an_imported_module_gives_the_modules_own_outputs_and_post_activation_maps():
    module = trained_like(Residual())
    imported = import_module(module, (1, 28, 28))
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(imported.model(x), module(x), atol=1e-5)
        expected = F.relu(module.bn(module.conv1(x)))  # the map a reader means by conv1: after its ReLU
    maps = feature_maps(imported.model, x, ["conv1", "conv2", "down"])
    assert torch.allclose(maps["conv1"], expected, atol=1e-5) and maps["down"].min() >= 0
    nodes = {n["name"]: n for n in imported.graph["nodes"]}
    assert nodes["conv1"]["activation"] == "relu" and "bn" in nodes["conv1"] and nodes["down"]["stride"] == [2, 2]
    assert nodes["add"]["op"] == "add" and nodes["fc"]["op"] == "dense"


def test_a_pt2_file_imports_through_the_cli_and_reopens_without_the_users_code(tmp_path, capsys):
    module = trained_like(Residual())
    torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 28, 28),)), str(tmp_path / "residual.pt2"))
    out = tmp_path / "run"
    main(["import", str(tmp_path / "residual.pt2"), "--dataset", "mnist", "--out", str(out)])
    assert "imported residual.pt2" in capsys.readouterr().out
    x = torch.rand(4, 1, 28, 28)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))  # the project's own format: nothing to unpickle
    with torch.no_grad():
        expected = module(x)
    # A new interpreter that has never seen the class Residual opens the run and gives the same logits.
    script = (f"from safetensors.torch import load_file; from convlens.runs import load_run; "
              f"x = load_file({str(tmp_path / 'x.safetensors')!r})['x']; print(load_run({str(out)!r}).model(x).tolist())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert torch.allclose(torch.tensor(json.loads(done.stdout)), expected, atol=1e-5)
    main(["maps", str(out), "--index", "0", "--layer", "conv1"])
    assert json.loads((out / "maps" / "maps.json").read_text())["layers"]["conv1"]["shape"] == [8, 28, 28]


def test_an_unsupported_operator_is_named(tmp_path):
    with pytest.raises(UserError, match="operator aten.pixel_shuffle.default .* is not supported; convlens imports"):
        import_model(PixelShuffle(), "mnist", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_rgb_models_oip_raises_its_maps_activation(mnist, tmp_path):
    module = trained_like(Residual(channels=3, side=32))
    dataset = mnist_32(mnist, tmp_path / "rgb", 3)
    run = import_model(module, dataset, tmp_path / "run").files[0].parent
    result = layer_oip(run, ["conv2"], maps=[0, 1, 2], out=tmp_path / "oip", log=lambda *a: None)
    model = load_run(run).model
    start = feature_maps(model, multiscale_noise(1, shape=(3, 32, 32)), ["conv2"])["conv2"][0]
    for entry in json.loads((tmp_path / "oip" / "oip.json").read_text())["maps"]:
        assert entry["activation"] > max(start[entry["map"]].mean().item(), 0.0)
    assert result.data["conv2"]["maps"] == 3


def test_the_live_page_takes_a_colour_picture_for_a_colour_model(mnist, tmp_path):
    import io

    from PIL import Image

    from convlens.data import load_dataset
    from convlens.web.live import LiveRun

    module = trained_like(Residual(channels=3, side=32))
    dataset = mnist_32(mnist, tmp_path / "rgb", 3)
    import_model(module, dataset, tmp_path / "runs" / "rgb")
    live = LiveRun(tmp_path / "runs" / "rgb")
    assert live.info()["input_shape"] == [3, 32, 32]
    image = load_dataset(dataset).test_images[0]  # (3, 32, 32) uint8
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    result = live.analyse_upload(buffer.getvalue())
    with torch.no_grad():
        probabilities = module(image[None].float() / 255).softmax(1)[0]
    assert result["predicted"] == int(probabilities.argmax())
    assert result["probabilities"] == pytest.approx(probabilities.tolist(), abs=1e-4)
    assert {layer["name"] for layer in result["layers"]} >= {"conv1", "conv2", "down", "pool"}
    with pytest.raises(UserError, match="takes colour images; upload or drop a PNG or JPEG"):
        live.analyse_drawing(bytes(100), 10, 10)
