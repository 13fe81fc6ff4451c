"""Keras models converted to ONNX by tf2onnx (fixtures/tf2onnx/make_tf2onnx.py, real TensorFlow 2.15 and tf2onnx
1.16): NHWC inputs, Transposes around the convolutions, per-channel Mul and Add, Keras's flattening order. Each
agrees with onnxruntime and with Keras's own predict on real digits; a legacy .h5 with a nested base model too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convlens.importers import import_file
from convlens.layers import layer_table

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf2onnx"
NETS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


def inputs(name: str, graph: dict) -> torch.Tensor:
    """The fixture's 0-255 digits as the imported graph takes them: / 255 where the model rescales its own
    pixels (the importer scaled that node by 255, as convlens feeds pixels / 255), raw where it does not."""
    pixels = torch.from_numpy(np.load(FIXTURES / ("digits.npy" if name == "articles" else "colour.npy")))
    first = graph["nodes"][0]
    x = pixels.permute(0, 3, 1, 2)
    return x / 255.0 if first["op"] == "affine" and first["inputs"] == ["input"] else x


def assert_agrees(ours: torch.Tensor, reference: np.ndarray) -> None:
    reference = torch.from_numpy(reference)
    assert (ours - reference).abs().max().item() <= 1e-4 * max(1.0, reference.abs().max().item())
    assert torch.equal(ours.argmax(1), reference.argmax(1))


def test_the_families_of_the_issue_have_a_tf2onnx_fixture():
    assert set(NETS) >= {"articles", "mobilenetv2", "resnet50", "efficientnetb0", "densenet121", "squeeze"}


@pytest.mark.parametrize("name", NETS)
def test_a_tf2onnx_export_agrees_with_onnxruntime_and_keras(name):
    imported = import_file(FIXTURES / f"{name}.onnx")
    with torch.no_grad():
        ours = imported.model(inputs(name, imported.graph))
    if name == "articles":  # its softmax is kept by Keras and onnxruntime; convlens gives logits
        ours = ours.softmax(1)
    assert_agrees(ours, np.load(FIXTURES / f"{name}.onnx_outputs.npy"))
    assert_agrees(ours, np.load(FIXTURES / f"{name}.keras_outputs.npy"))


def test_the_articles_net_keeps_keras_layer_names_and_its_maps():
    imported = import_file(FIXTURES / "articles.onnx")
    table = layer_table(imported.model)
    assert [layer.name for layer in table if layer.kind in ("conv", "logits")] == ["conv2d", "conv2d_1", "conv2d_2", "dense"]
    assert table["conv2d_2"].output_shape == (128, 3, 3) and table["conv2d_2"].field.size == 18
    flatten = next(n for n in imported.graph["nodes"] if n["op"] == "flatten")
    assert "keras_order" not in flatten  # consumed: the dense layer's columns were put in PyTorch's order


def test_uneven_tensorflow_padding_becomes_same_or_a_pad_layer():
    """tf2onnx folds ZeroPadding2D into a Conv's pads [1, 0, 2, 1]; a 'same' max pool keeps pads [1, 0, 1, 1]."""
    graph = import_file(FIXTURES / "squeeze.onnx").graph
    by_name = {n["name"]: n for n in graph["nodes"]}
    conv = next(n for n in graph["nodes"] if n["op"] == "conv")
    assert by_name[conv["inputs"][0]]["op"] == "pad" and by_name[conv["inputs"][0]]["pads"] == [1, 2, 0, 1]
    assert next(n for n in graph["nodes"] if n["op"] == "maxpool")["padding"] == "same"


def test_a_legacy_h5_with_a_nested_base_model_agrees_with_keras():
    imported = import_file(FIXTURES / "transfer.h5")
    x = torch.from_numpy(np.load(FIXTURES / "colour.npy")).permute(0, 3, 1, 2) / 255.0
    with torch.no_grad():
        assert_agrees(imported.model(x), np.load(FIXTURES / "transfer.keras_outputs.npy"))
    assert sum(n["op"] == "conv" for n in imported.graph["nodes"]) == 52  # MobileNetV2's, opened from inside the base
