"""Models of other input sizes and colours flow through the layer table: summary, maps, top crops, OIPs.

Two real data sets made from MNIST (conftest.mnist_32): digits padded to 32x32, grey and in colour.
Each trains one epoch on 2,048 images; every inspection then runs on the run folder as it does on
a 28x28 one.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import mnist_32
from convlens import RunConfig, layer_table, load_run, train
from convlens.cli import main
from convlens.inspection.maps import feature_maps, top_activations
from convlens.jobs.oip import layer_oip
from convlens.models import build_model
from convlens.oip import multiscale_noise


@pytest.fixture(scope="module", params=[1, 3], ids=["1x32x32", "3x32x32"])
def run32(request, mnist, tmp_path_factory):
    """Return a run folder of `simple` trained one epoch on 32x32 images with 1 or 3 channels."""
    channels = request.param
    dataset = mnist_32(mnist, tmp_path_factory.mktemp(f"data{channels}"), channels)
    run = tmp_path_factory.mktemp(f"run{channels}") / "run"
    config = RunConfig().replace(data={"dataset": dataset, "val_size": 256},
                                 train={"epochs": 1, "batch_size": 64, "precision": "fp32"})
    train(config, out=run)
    return run, channels


def test_the_run_records_its_input_shape_and_the_table_follows_it(run32):
    path, c = run32
    run = load_run(path)
    assert json.loads((path / "config.json").read_text())["model"]["input_shape"] == [c, 32, 32]
    table = run.layers
    assert table.input_shape == (c, 32, 32)
    assert [r.output_shape for r in table][:5] == [(32, 30, 30), (32, 15, 15), (64, 13, 13), (64, 6, 6), (128, 4, 4)]
    assert table["conv1"].params == 32 * (c * 9 + 1) and table["flatten"].output_shape == (2048,)
    assert table["logits"].params == 2048 * 10 + 10
    assert table["flatten"].field.size == 30  # the 4x4 grid of conv3 fields, 4 px apart: 18 + 3 * 4


def test_a_receptive_field_is_exactly_the_pixels_that_move_its_unit():
    """Noise outside a conv3 unit's box leaves the unit unchanged; a change inside the box moves it."""
    torch.manual_seed(0)
    model = build_model("simple", input_shape=(3, 32, 32)).eval()
    field = layer_table(model)["conv3"].field
    top, left, bottom, right = field.box(2, 1, 32)
    assert (top, left, bottom, right) == (8, 4, 26, 22)
    x = torch.rand(1, 3, 32, 32)
    outside = x + torch.rand_like(x)
    outside[..., top:bottom, left:right] = x[..., top:bottom, left:right]
    inside = x.clone()
    inside[..., top + 8, left + 8] += 1.0
    unit = lambda images: feature_maps(model, images, ["conv3"])["conv3"][0, :, 2, 1]  # noqa: E731
    assert torch.allclose(unit(outside), unit(x), atol=1e-6)
    assert not torch.allclose(unit(inside), unit(x), atol=1e-3)


def test_maps_kernels_and_top_crops_through_the_cli(run32, tmp_path, capsys):
    path, c = run32
    main(["maps", str(path), "--index", "0,1", "--out", str(tmp_path / "maps")])
    shapes = json.loads((tmp_path / "maps" / "maps.json").read_text())["layers"]
    assert shapes["conv1"]["shape"] == [32, 30, 30] and shapes["conv3"]["shape"] == [128, 4, 4]
    main(["kernels", str(path), "--out", str(tmp_path / "kernels")])
    assert json.loads((tmp_path / "kernels" / "kernels_conv1.json").read_text())["shape"] == [32, c, 3, 3]
    main(["top", str(path), "--layer", "conv3", "--k", "3", "--out", str(tmp_path / "top")])
    top = json.loads((tmp_path / "top" / "top_conv3.json").read_text())
    assert top["receptive_field"] == {"size": 18, "jump": 4, "offset": 0}
    run = load_run(path)
    expected = top_activations(run.model, run.test_inputs, "conv3", k=3)
    assert [m["indices"] for m in top["maps"]] == expected.indices.tolist()
    assert [m["positions"] for m in top["maps"]] == expected.positions.tolist()
    assert len(list((tmp_path / "top").glob("top_conv3_maps_*.png"))) == 16  # 128 maps, 8 per page
    assert "wrote" in capsys.readouterr().out


def test_an_oip_raises_its_maps_activation_at_any_input_shape(run32, tmp_path):
    path, c = run32
    result = layer_oip(path, ["conv2"], maps=[0, 1, 2, 3], out=tmp_path, log=lambda *a: None)
    entries = json.loads((tmp_path / "oip.json").read_text())["maps"]
    saved = load_run(path)
    assert result.data["conv2"]["maps"] == 4
    images = load_file(str(tmp_path / "oip_conv2.safetensors"))["images"]
    assert images.shape == (4, 1, c, 32, 32) and 0 <= images.min() and images.max() <= 1
    maps = feature_maps(saved.model, images[:, 0], ["conv2"])["conv2"]  # (4, 64, 13, 13)
    start = feature_maps(saved.model, multiscale_noise(1, shape=(c, 32, 32)), ["conv2"])["conv2"][0]  # the noise start
    for i, e in enumerate(entries):
        assert maps[i, e["map"]].mean().item() == pytest.approx(e["activation"], rel=1e-4, abs=1e-5)
        assert e["activation"] > max(start[e["map"]].mean().item(), 0.0)
