"""Probes: how well the class can be read off each layer's flattened activations.

Two readers per layer, both fitted on training images and scored on test images: a linear
(softmax) probe and a nearest-centroid classifier. Together they answer the articles' question of
where the classification happens: already in the conv part, or only in the dense part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import track
from .maps import iter_maps


def layer_features(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Return one layer's activations for the images, flattened to (N, features)."""
    return torch.cat([maps.flatten(1) for _, maps in iter_maps(model, images, layer)])


def nearest_centroid_accuracy(train_f, train_y, test_f, test_y, num_classes: int) -> float:
    """Return the test accuracy of assigning each test point the class of the nearest training class mean."""
    centroids = torch.zeros(num_classes, train_f.shape[1]).index_add_(0, train_y, train_f)
    centroids /= torch.bincount(train_y, minlength=num_classes).clamp(min=1)[:, None]
    pred = torch.cdist(test_f, centroids).argmin(1)
    return (pred == test_y).float().mean().item()


def linear_probe_accuracy(train_f, train_y, test_f, test_y, num_classes: int, iterations: int = 50,
                          l2: float = 1e-4) -> float:
    """Return the test accuracy of a softmax regression fitted by full-batch L-BFGS on standardised features.

    The problem is convex, so L-BFGS finds the optimum with no learning rate to tune; minibatch Adam
    left the 10-feature logits probe 1-7 points under the model it reads.
    """
    mean, std = train_f.mean(0), train_f.std(0).clamp(min=1e-6)
    train_f, test_f = (train_f - mean) / std, (test_f - mean) / std
    probe = nn.Linear(train_f.shape[1], num_classes)
    nn.init.zeros_(probe.weight)  # a fixed start: the result does not depend on the global RNG
    nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(train_f), train_y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (probe(test_f).argmax(1) == test_y).float().mean().item()


def probe(model: nn.Module, train_images, train_labels, test_images, test_labels, layers: list[str],
          num_classes: int | None = None, log=lambda message: None) -> dict[str, dict]:
    """Return {layer: {'features', 'linear', 'centroid'}}: feature count and the two probe accuracies."""
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    result = {}
    # One layer at a time keeps memory to one layer's features; the bar weighs each by its feature count.
    sizes = {name: layer_features(model, train_images[:1], name).shape[1] for name in layers}
    for i, layer in enumerate(track(layers, "probing layers", weight=sizes.get)):
        log(f"probing {layer} ({i + 1}/{len(layers)})")
        tr = layer_features(model, train_images, layer)
        te = layer_features(model, test_images, layer)
        result[layer] = {
            "features": tr.shape[1],
            "linear": linear_probe_accuracy(tr, train_labels, te, test_labels, num_classes),
            "centroid": nearest_centroid_accuracy(tr, train_labels, te, test_labels, num_classes),
        }
    return result
