"""Keras models made by real Keras (tests/fixtures/keras/make_fixtures.py) against Keras's own outputs.

The fixtures were trained briefly on MNIST by Keras 3 with TensorFlow in a separate venv; each
`NAME.outputs.npy` holds Keras's softmax outputs on the first 64 test images.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from convlens.cli import main
from convlens.errors import UserError
from convlens.importers import import_file
from convlens.importers.keras import SUPPORTED
from convlens.jobs.import_model import import_model
from convlens.runs import load_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
REFERENCE = 64


def keras_outputs(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name}.outputs.npy")


def convlens_outputs(model, mnist) -> np.ndarray:
    x = mnist.test_images[:REFERENCE].unsqueeze(1).float() / 255  # what convlens feeds every model
    with torch.no_grad():
        return model(x).softmax(1).numpy()


@pytest.mark.parametrize("file, reference", [("articles.keras", "articles"), ("articles.h5", "articles"),
                                             ("functional.keras", "functional"), ("residual.keras", "residual")])
def test_imported_models_reproduce_keras_outputs(file, reference, mnist):
    ours, theirs = convlens_outputs(import_file(FIXTURES / file).model, mnist), keras_outputs(reference)
    assert np.abs(ours - theirs).max() <= 1e-4
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_the_functional_model_becomes_layers_keras_users_recognise():
    graph = import_file(FIXTURES / "functional.keras").graph
    ops = {n["name"]: n for n in graph["nodes"]}
    # Conv2D (no bias) -> BatchNormalization -> Activation('relu') is one layer: the map after its ReLU.
    first = next(n for n in graph["nodes"] if n["op"] == "conv")
    assert "bn" in first and first["activation"] == "relu" and first["bias"] is False
    assert [n["op"] for n in graph["nodes"]].count("batchnorm") == 0 and "activation" not in {n["op"] for n in ops.values()}
    strided = [n for n in graph["nodes"] if n["op"] == "conv" and n["stride"] == [2, 2]]
    assert strided and strided[0]["padding"] == "same" and strided[0]["activation"] == "tanh"
    assert graph["nodes"][0]["op"] == "affine" and graph["nodes"][0]["scale"] == pytest.approx(1.0)  # Rescaling(1/255)
    assert graph["nodes"][-1]["op"] == "dense" and graph["nodes"][-1]["activation"] is None  # softmax -> logits


def test_flatten_order_moves_from_keras_hwc_to_torch_chw_exactly():
    """The fixture's Dense kernel is the identity: output j is Keras's j-th flattened value, x[h, w, c]."""
    model = import_file(FIXTURES / "flatten_order.keras").model
    x = torch.arange(24, dtype=torch.float32).reshape(1, 2, 4, 3)  # (C, H, W) as convlens holds it
    expected = x[0].permute(1, 2, 0).reshape(-1)  # Keras flattens (H, W, C)
    assert torch.equal(model(x)[0], expected)


def test_an_unsupported_layer_is_named_with_its_type_and_the_supported_list(tmp_path):
    with pytest.raises(UserError) as error:
        import_model(FIXTURES / "unsupported.keras", "mnist", tmp_path / "run")
    message = str(error.value)
    assert "of type Permute is not supported" in message and ", ".join(SUPPORTED) in message
    assert "permute" in message and not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes((FIXTURES / "articles.keras").read_bytes()[:5000]), "damaged zip archive"),
    (lambda p: p.write_bytes((FIXTURES / "articles.h5").read_bytes()[:5000]), "not a readable Keras model"),
    (lambda p: p.write_text("hello"), "not a model file convlens reads"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("config.json", "{not json"), "not a readable Keras model"),
    (lambda p: p.mkdir(), "is a folder"),
])
def test_bad_model_files_are_one_clear_error_and_write_nothing(tmp_path, make, message):
    bad = tmp_path / "model.keras"
    make(bad)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_model(bad, "mnist", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_model_must_fit_the_data_and_have_a_convolution(tmp_path, mnist):
    from conftest import write_idx_folder

    padded = torch.nn.functional.pad(mnist.test_images[:20], (2, 2, 2, 2)).numpy()
    folder = write_idx_folder(tmp_path / "data32", padded, mnist.test_labels[:20].numpy(), padded,
                              mnist.test_labels[:20].numpy())
    with pytest.raises(UserError, match="the model takes images of 28x28 with 1 channel but idx:.* has 32x32"):
        import_model(FIXTURES / "articles.keras", f"idx:{folder}", tmp_path / "run")
    with pytest.raises(UserError, match="has no convolution"):
        import_model(FIXTURES / "mlp.keras", "mnist", tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data32"]


def test_an_imported_run_records_where_it_came_from_and_reopens_in_a_new_process(keras_run, mnist):
    source = json.loads((keras_run / "graph.json").read_text())["source"]
    assert source["format"] == "keras" and source["file"] == "articles.keras"
    import hashlib

    assert source["sha256"] == hashlib.sha256((FIXTURES / "articles.keras").read_bytes()).hexdigest()
    run = load_run(keras_run)  # no Keras, no pickle: graph.json and model.safetensors
    assert np.abs(convlens_outputs(run.model, mnist) - keras_outputs("articles")).max() <= 1e-4
    metrics = json.loads((keras_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9 and run.layers.convs == ["conv2d", "conv2d_1", "conv2d_2"]


COMMANDS = [["summary", "{run}"], ["eval", "{run}"], ["maps", "{run}", "--images", "4:3,9:1"], ["kernels", "{run}"],
            ["patterns", "{run}", "--classes", "4,9"], ["top", "{run}", "--k", "3"],
            ["probe", "{run}", "--train-size", "500", "--layer", "conv2d_2"], ["filters-demo", "{run}"],
            ["oip", "{run}", "--steps", "8"], ["oip", "{run}", "--logits", "--steps", "8"],
            ["explain", "{run}", "--index", "4", "--steps", "8"], ["report", "{run}"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] + ("-logits" if "--logits" in c else "") for c in COMMANDS])
def test_every_command_works_on_an_imported_run(keras_run, command, capsys):
    main([a.format(run=keras_run) for a in command])
    out = capsys.readouterr().out
    assert "wrote" in out or "test accuracy" in out or "conv2d_2" in out


def test_the_report_shows_where_the_model_came_from(keras_run):
    main(["report", str(keras_run)])
    page = (keras_run / "report.html").read_text()
    assert "Where the model came from" in page and "articles.keras" in page and "sha256" in page


def test_a_model_file_where_a_run_folder_belongs_says_to_import_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["maps", str(FIXTURES / "articles.keras")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is a file, not a run folder" in err and "convlens import" in err


def test_a_keras_training_compares_with_a_convlens_training_layer_by_layer(trained_run, small_mnist, tmp_path):
    """The articles' question across frameworks: the Keras net's layers pair with simple's by position and shape."""
    keras_run = tmp_path / "keras"
    import_model(FIXTURES / "articles.keras", small_mnist, keras_run)
    main(["compare", str(keras_run), str(trained_run), "--test-images", "200", "--out", str(tmp_path / "cmp")])
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    layers = report["pairs"]["keras vs run"]["layers"]
    assert list(layers) == ["conv2d", "conv2d_1", "conv2d_2"]
    assert [len(v["matched"]) for v in layers.values()] == [32, 64, 128]
    assert report["pairs"]["keras vs run"]["prediction_agreement"] > 0.8


def test_an_imported_run_is_not_trained_further(keras_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(keras_run)])
    assert exit_info.value.code == 2 and "holds an imported model" in capsys.readouterr().err
