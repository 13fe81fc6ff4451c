"""Minibatch CKA agrees with the estimator written out in float64, and with torch-cka, the reference implementation."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlens.compare.runs_compare import representation_layers
from convlens.compare.study import minibatch_cka
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


def reference_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """HSIC_1 of Song et al. 2012 as the paper writes it, in float64, from Gram matrices (n, n)."""
    n = len(k)
    k, l = k.double().fill_diagonal_(0), l.double().fill_diagonal_(0)
    ones = torch.ones(n, dtype=torch.float64)
    return (torch.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (ones @ k @ l @ ones)) / (n * (n - 3))


def reference_cka(a, b, x, layers, batch=256) -> torch.Tensor:
    """Minibatch CKA from float64 maps, one batch at a time, without any of convlens's shortcuts."""
    hsic = torch.zeros(2, len(layers), 2, len(layers), dtype=torch.float64)
    starts = range(0, len(x), batch)
    for start in starts:
        grams = [[m.flatten(1) @ m.flatten(1).T for m in feature_maps(model, x[start : start + batch], layers).values()]
                 for model in (a, b)]
        for i, j, p, q in itertools.product(range(2), range(len(layers)), range(2), range(len(layers))):
            hsic[i, j, p, q] += reference_hsic(grams[i][j], grams[p][q]) / len(starts)
    self_a, self_b = (torch.stack([hsic[i, j, i, j] for j in range(len(layers))]) for i in range(2))  # HSIC(K, K)
    return (hsic[0, :, 1, :] / (self_a[:, None] * self_b[None, :]).sqrt()).float()


def test_minibatch_cka_equals_torch_cka_on_the_same_layers_and_batches(mnist):
    x = images_to_device(load_dataset("mnist").test_images[:600], torch.device("cpu"))  # batches 256, 256, 88
    a, b = two_models()
    layers = representation_layers(layer_table(a, (1, 28, 28)))
    ours = minibatch_cka(a, b, x, layers)
    assert ours.shape == (len(layers), len(layers))
    exact = reference_cka(a.double(), b.double(), x.double(), layers)
    torch.testing.assert_close(ours, exact, atol=1e-5, rtol=0)

    reference = torch_cka.CKA(*two_models(), "a", "b", model1_layers=layers, model2_layers=layers)
    with torch.no_grad():
        reference.compare(DataLoader(TensorDataset(x), batch_size=256))
    # torch-cka multiplies its Gram matrices in float32: it was 3.6e-4 off the float64 value here on
    # an AMD EPYC (AVX2), under 2e-4 on a Xeon (AVX-512); convlens agrees with float64 to 1e-7.
    torch.testing.assert_close(ours, reference.export()["CKA"].float(), atol=1e-3, rtol=0)
    assert ours.max() - ours.min() > 0.3  # not a trivial agreement: the values spread over the layers


def test_minibatch_cka_of_a_model_with_itself_is_one_and_needs_four_images():
    a, _ = two_models()
    x = torch.rand(40, 1, 28, 28)
    layers = layer_table(a, (1, 28, 28)).map_layers
    torch.testing.assert_close(minibatch_cka(a, a, x, layers, batch=16).diagonal(), torch.ones(len(layers)),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least 4 images"):
        minibatch_cka(a, a, x[:3], layers)
