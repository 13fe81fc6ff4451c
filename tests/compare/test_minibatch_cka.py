"""Minibatch CKA agrees with torch-cka, the reference implementation of the same estimator."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlens.compare.runs_compare import representation_layers
from convlens.compare.similarity import minibatch_cka
from convlens.data import load_dataset
from convlens.inspection.maps import feature_maps
from convlens.layers import layer_table
from convlens.models import build_model
from convlens.speed import for_inference, images_to_device

torch_cka = pytest.importorskip("torch_cka")


def two_models():
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(for_inference(build_model("simple")))
    return models


def test_minibatch_cka_equals_torch_cka_on_the_same_layers_and_batches(mnist):
    x = images_to_device(load_dataset("mnist").test_images[:600], torch.device("cpu"))  # batches 256, 256, 88
    a, b = two_models()
    layers = representation_layers(layer_table(a, (1, 28, 28)))
    ours = minibatch_cka(list(feature_maps(a, x, layers).values()), list(feature_maps(b, x, layers).values()))

    reference = torch_cka.CKA(*two_models(), "a", "b", model1_layers=layers, model2_layers=layers)
    with torch.no_grad():
        reference.compare(DataLoader(TensorDataset(x), batch_size=256))
    expected = reference.export()["CKA"]
    assert ours.shape == (len(layers), len(layers))
    torch.testing.assert_close(ours, expected.float(), atol=2e-4, rtol=0)
    assert ours.max() - ours.min() > 0.3  # not a trivial agreement: the values spread over the layers


def test_minibatch_cka_of_a_model_with_itself_is_one_and_needs_four_images():
    a, _ = two_models()
    x = torch.rand(40, 1, 28, 28)
    maps = list(feature_maps(a, x).values())
    torch.testing.assert_close(minibatch_cka(maps, maps, batch=16).diagonal(), torch.ones(len(maps)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least 4 images"):
        minibatch_cka([m[:3] for m in maps], [m[:3] for m in maps])
