"""keras.applications' families, made by real Keras (fixtures/keras/make_applications.py), agree with Keras's own
logits on real digits, and an imported family answers every question a run answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.cli import main
from convlens.importers import import_file
from convlens.layers import layer_table

APPLICATIONS = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "applications"
FAMILIES = sorted(p.stem for p in APPLICATIONS.glob("*.keras"))


def keras_inputs(graph: dict) -> torch.Tensor:
    """The fixture's 0-255 digits as this graph takes them: a model that rescales its own input was given
    pixels * 255 by the importer (convlens feeds pixels / 255), so it gets / 255; one that does not, raw."""
    pixels = torch.from_numpy(np.load(APPLICATIONS / "inputs.npy")).permute(0, 3, 1, 2)
    first = graph["nodes"][0]
    return pixels / 255.0 if first["op"] == "affine" and first["inputs"] == ["input"] else pixels


def test_every_family_named_in_the_issue_has_a_fixture():
    assert set(FAMILIES) >= {"MobileNet", "MobileNetV2", "MobileNetV3Small", "ResNet50", "ResNet50V2", "DenseNet121",
                             "EfficientNetB0", "InceptionV3", "Xception", "ConvNeXtTiny"}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_keras_application_gives_keras_own_logits(family):
    imported = import_file(APPLICATIONS / f"{family}.keras")
    reference = torch.from_numpy(np.load(APPLICATIONS / f"{family}.outputs.npy"))
    with torch.no_grad():
        ours = imported.model(keras_inputs(imported.graph))
    assert (ours - reference).abs().max().item() <= 1e-4 * max(1.0, reference.abs().max().item())
    assert torch.equal(ours.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("family, join", [("ResNet50", "add"), ("DenseNet121", "concat"), ("InceptionV3", "concat"),
                                          ("EfficientNetB0", "mul")])
def test_branches_stay_branches_and_fields_follow_them(family, join):
    """A join reads two different layers, and its receptive field is the union of theirs, not the last one's."""
    imported = import_file(APPLICATIONS / f"{family}.keras")
    table = {layer.name: layer for layer in layer_table(imported.model)}
    joins = [n for n in imported.graph["nodes"] if n["op"] == join]
    assert joins and all(len(set(n["inputs"])) >= 2 for n in joins)
    for node in joins:
        fields = [table[i].field for i in node["inputs"] if i in table and table[i].field.jump]
        if len(fields) >= 2:
            start = min(f.offset for f in fields)
            assert table[node["name"]].field.offset == start
            assert table[node["name"]].field.size == max(f.offset + f.size for f in fields) - start


def test_depthwise_and_separable_convolutions_keep_their_shape():
    graph = import_file(APPLICATIONS / "Xception.keras").graph
    separable = [n for n in graph["nodes"] if n["name"].endswith("_depthwise")]
    assert separable and all(n["groups"] == n["in"] == n["out"] for n in separable)
    pointwise = {n["inputs"][0]: n for n in graph["nodes"] if n["op"] == "conv"}
    assert all(pointwise[n["name"]]["kernel"] == [1, 1] for n in separable)


@pytest.fixture(scope="module")
def colour_digits(mnist, tmp_path_factory) -> Path:
    """An image folder of real digits at the applications' 75x75, in colour: 20 per class for train and test."""
    root = tmp_path_factory.mktemp("colour-digits")
    for split, images, labels in (("train", mnist.train_images, mnist.train_labels),
                                  ("test", mnist.test_images, mnist.test_labels)):
        for k in range(200):
            folder = root / split / str(int(labels[k]))
            folder.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray(images[k].numpy()).resize((75, 75), Image.Resampling.BILINEAR)
            Image.merge("RGB", (grey, grey.point(lambda v: v * 0.8), grey.point(lambda v: v * 0.6))).save(
                folder / f"{k}.png")
    return root


def test_an_imported_application_answers_maps_top_and_summary(colour_digits, tmp_path, capsys):
    run = tmp_path / "mobilenetv2"
    main(["import", str(APPLICATIONS / "MobileNetV2.keras"), "--dataset", str(colour_digits), "--out", str(run)])
    capsys.readouterr()
    main(["summary", str(run)])
    summary = capsys.readouterr().out
    assert "block_16_project " in summary and "block_16_depthwise " in summary  # whole names, however narrow
    main(["maps", str(run), "--images", "3:1", "--layer", "block_1_depthwise"])
    maps = json.loads((run / "maps" / "maps.json").read_text())
    assert maps["layers"]["block_1_depthwise"]["shape"] == [48, 19, 19]  # one map per map of block_1_expand
    main(["top", str(run), "--layer", "block_4_add", "--k", "2"])
    top = json.loads((run / "top" / "top_block_4_add.json").read_text())
    # The union of both branches' fields: block_4_project's 43 pixels cover the skip's (block_3_project's 27).
    assert top["receptive_field"] == {"size": 43, "jump": 8, "offset": -19}
    main(["kernels", str(run), "--layer", "block_1_depthwise"])
    kernels = json.loads((run / "kernels" / "kernels_block_1_depthwise.json").read_text())
    assert kernels["shape"] == [48, 1, 3, 3] and kernels["depthwise"]  # one kernel per channel, each drawn
