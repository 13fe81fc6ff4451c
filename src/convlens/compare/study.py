"""A seed study: the similarity of every pair of N runs, from one pass of each run's maps; tensors in, tensors out.

Comparing N runs pair by pair would run every model N-1 times and copy its maps as often. Here each
batch of images goes once through every model; one product per layer of all runs' maps side by side
gives every pair's cross moments at once (the Pearson correlation of every map of every run with every
map of every other), and each run's Gram matrices give minibatch CKA between all runs and layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..inspection.maps import feature_maps
from .runs_compare import PARTNER_R
from .similarity import batch_starts, match, unbiased_hsic, zero_diagonal_gram

BATCH = 256  # images per pass: activations stay in cache, and the CKA estimator's batch (torch-cka's too)


@dataclass
class Moments:
    """Running sums over images and positions of one layer's maps, all models side by side (M*C columns)."""

    cross: torch.Tensor  # (M*C, M*C) sum of x_i x_j
    total: torch.Tensor  # (M*C,) sum of x
    high: torch.Tensor  # (M*C,) largest value seen: a map whose largest equals its smallest is silent
    low: torch.Tensor
    count: int = 0

    def add(self, columns: torch.Tensor) -> None:
        """Add rows (P, M*C) of maps (one row per image and position)."""
        self.cross += (columns.T @ columns).double()
        self.total += columns.sum(0).double()
        self.high = torch.maximum(self.high, columns.amax(0))
        self.low = torch.minimum(self.low, columns.amin(0))
        self.count += len(columns)

    def correlation(self) -> torch.Tensor:
        """(M*C, M*C) Pearson correlation; 0 wherever a map is constant."""
        mean = self.total / self.count
        cov = self.cross / self.count - mean[:, None] * mean[None, :]
        std = cov.diagonal().clamp(min=0).sqrt()
        return (cov / (std[:, None] * std[None, :]).clamp(min=1e-12)).float()

    def silent(self) -> torch.Tensor:
        return self.high == self.low


@dataclass
class Study:
    """What every pair of M models shares, for the conv layers (maps) and all compared layers (CKA)."""

    conv_layers: list[str]
    cka_layers: list[str]
    correlations: dict[str, torch.Tensor]  # layer -> (M, M, C, C): map correlations of model i with model j
    silent: dict[str, torch.Tensor]  # layer -> (M, C) maps constant over every image and position
    cka: torch.Tensor  # (M, M, L): minibatch CKA of model i's layer l with model j's layer l
    # (layer, i, j) -> matched(): the report and the figures ask for each pair more than once
    _matches: dict = field(default_factory=dict, init=False, repr=False)

    def matched(self, layer: str, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (the map of j matched to each map of i, whether that pair is live) by Hungarian matching."""
        if (layer, i, j) not in self._matches:
            partner = match(self.correlations[layer][i, j])
            live = ~self.silent[layer][i] & ~self.silent[layer][j][partner]
            self._matches[layer, i, j] = partner, live
        return self._matches[layer, i, j]

    def matched_correlation(self, layer: str, i: int, j: int) -> torch.Tensor:
        """The matched correlations of the live pairs of maps of i and j."""
        partner, live = self.matched(layer, i, j)
        corr = self.correlations[layer][i, j]
        return corr[torch.arange(len(partner)), partner][live]

    def partners_of(self, layer: str, reference: int, others: list[int]) -> torch.Tensor:
        """(C,) in how many of the other models each live map of the reference has a partner (r >= PARTNER_R)."""
        counts = torch.zeros(self.correlations[layer].shape[2], dtype=torch.long)
        for j in others:
            partner, live = self.matched(layer, reference, j)
            corr = self.correlations[layer][reference, j][torch.arange(len(partner)), partner]
            counts += ((corr >= PARTNER_R) & live).long()
        return counts


@dataclass
class Sums:
    """What some batches of images contribute to a study; sums of several parts are the sums of their batches."""

    moments: dict[str, Moments]
    hsic: torch.Tensor  # (M*L, M*L) summed over the batches
    batches: int

    def __add__(self, other: "Sums") -> "Sums":
        moments = {layer: Moments(m.cross + o.cross, m.total + o.total, torch.maximum(m.high, o.high),
                                  torch.minimum(m.low, o.low), m.count + o.count)
                   for (layer, m), o in zip(self.moments.items(), other.moments.values())}
        return Sums(moments, self.hsic + other.hsic, self.batches + other.batches)


@torch.no_grad()
def study_sums(models: list[nn.Module], images: torch.Tensor, conv_layers: list[str], cka_layers: list[str],
               starts: Iterable[int], batch: int = BATCH) -> Sums:
    """Return the Sums of the batches of images that begin at `starts`: each batch goes once through every model."""
    moments: dict[str, Moments] = {}
    hsic = torch.zeros(len(models) * len(cka_layers), len(models) * len(cka_layers), dtype=torch.float64)
    batches = 0
    for batches, start in enumerate(starts, 1):
        xb = images[start : start + batch]
        maps = [feature_maps(m, xb, cka_layers) for m in models]
        for layer in conv_layers:
            columns = torch.cat([m[layer].permute(0, 2, 3, 1).reshape(-1, m[layer].shape[1]) for m in maps], 1)
            if layer not in moments:
                width = columns.shape[1]
                moments[layer] = Moments(torch.zeros(width, width, dtype=torch.float64),
                                         torch.zeros(width, dtype=torch.float64),
                                         torch.full((width,), -torch.inf), torch.full((width,), torch.inf))
            moments[layer].add(columns.float())
        grams = torch.stack([zero_diagonal_gram(m[layer]) for m in maps for layer in cka_layers])  # (M*L, n, n)
        hsic += unbiased_hsic(grams, grams)
    return Sums(moments, hsic, batches)


def study(models: list[nn.Module], images: torch.Tensor, conv_layers: list[str], cka_layers: list[str],
          batch: int = BATCH, each_batch=iter) -> Study:
    """Return the Study of the models on images (N, C, H, W); all models share the layers' names and shapes.

    each_batch wraps the list of batch starts: a progress bar, for instance.
    """
    sums = study_sums(models, images, conv_layers, cka_layers, each_batch(batch_starts(len(images), batch)), batch)
    return finish(sums, len(models), conv_layers, cka_layers)


def minibatch_cka(a: nn.Module, b: nn.Module, images: torch.Tensor, layers: list[str], batch: int = BATCH) -> torch.Tensor:
    """Return minibatch linear CKA (Nguyen et al. 2021; torch-cka's estimator) (La, Lb) of every layer of a with every
    layer of b: a study of the two models without map correlations.

    Each batch goes through both models and is reduced to its Gram matrices at once, so maps never
    pile up: 2,000 images of `simple`, two models, 0.9 s instead of 1.2-1.4 s with all maps made first
    (a forward pass of 2,000 images at once runs at half the speed of batches of 256, whose maps stay
    in cache).
    """
    starts = batch_starts(len(images), batch)
    if not starts:
        raise ValueError(f"minibatch CKA needs at least 4 images, not {len(images)}")
    cka = cka_of(study_sums([a, b], images, [], layers, starts, batch))
    return cka[: len(layers), len(layers) :].float()


def cka_of(sums: Sums) -> torch.Tensor:
    """Return CKA (M*L, M*L) of every model's layer with every other from the HSIC summed over the batches.

    HSIC is estimated without bias on each batch (Song et al. 2012), averaged over the batches, and
    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
    """
    hsic = sums.hsic / sums.batches
    norms = hsic.diagonal().clamp(min=1e-30).sqrt()
    return hsic / (norms[:, None] * norms[None, :])


def finish(sums: Sums, count: int, conv_layers: list[str], cka_layers: list[str]) -> Study:
    """Return the Study that the Sums of all batches of images give."""
    layers = len(cka_layers)
    cka = cka_of(sums).reshape(count, layers, count, layers)
    same_layer = cka.diagonal(dim1=1, dim2=3)  # (M, M, L): layer l of i against layer l of j
    correlations, silent = {}, {}
    for layer, m in sums.moments.items():
        channels = m.cross.shape[0] // count
        correlations[layer] = m.correlation().reshape(count, channels, count, channels).permute(0, 2, 1, 3)
        silent[layer] = m.silent().reshape(count, channels)
    return Study(conv_layers, cka_layers, correlations, silent, same_layer.float())
