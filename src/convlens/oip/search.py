"""Whole layers and classes in one batch: element b of the batch searches for map (or class) b.

Every map starts from the same K seeded noise images, so a map's OIPs do not depend on which other
maps were asked for, and the same seed gives the same OIPs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..inspection.filters import conv_weight
from ..layers import LayerTable, layer_table
from ..progress import ticking
from .ascent import Ascent, AscentResult, ascend
from .noise import multiscale_noise
from .objectives import LayerTarget, LogitTarget

MEMORY_BUDGET = 1.5 * 2**30  # bytes of saved activations one search step may hold


@dataclass
class OIPs:
    layer: str  # a conv layer, or "logits" for class OIPs
    objective: str  # mean, center or max; "logit" for class OIPs
    index: list[int]  # the maps (or classes) searched, in order
    images: torch.Tensor  # (M, K, C, H, W): K starts per map
    activation: torch.Tensor  # (M, K) objective reached
    start: torch.Tensor  # (M, K) objective at the start image
    pre_final: torch.Tensor  # (M, K) pre-activation objective reached
    steps: int
    seconds: float

    @property
    def fired(self) -> torch.Tensor:
        """(M,) whether any start made the map fire."""
        return (self.activation > 0).any(1)

    @property
    def fired_from_start(self) -> torch.Tensor:
        """(M,) whether the best start already fired before any step."""
        return self.start.gather(1, self.best_start[:, None]).squeeze(1) > 0

    @property
    def best_start(self) -> torch.Tensor:
        return self.activation.argmax(1)

    @property
    def reached(self) -> torch.Tensor:
        """(M,) the objective each map's strongest OIP reached."""
        return self.activation.amax(1)

    @property
    def best(self) -> torch.Tensor:
        """(M, C, H, W) each map's strongest OIP."""
        return self.images[torch.arange(len(self.index)), self.best_start]

    def similarity(self) -> torch.Tensor:
        """(M,) mean Pearson correlation between the K OIPs of each map; 1 = one favourite pattern. NaN for K=1."""
        m, k = self.images.shape[:2]
        if k < 2:
            return torch.full((m,), float("nan"))
        flat = self.images.flatten(2)
        flat = flat - flat.mean(2, keepdim=True)
        flat = flat / (flat.norm(dim=2, keepdim=True) + 1e-12)
        corr = flat @ flat.transpose(1, 2)  # (M, K, K)
        off_diagonal = ~torch.eye(k, dtype=torch.bool)
        return corr[:, off_diagonal].mean(1)


@contextmanager
def _frozen(model: nn.Module):
    """Eval mode and no parameter gradients for the search; the model is restored afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def _starts(count: int, starts: int, seed: int, shape: tuple[int, int, int]) -> torch.Tensor:
    if starts < 1:
        raise UserError(f"starts must be at least 1 (got {starts})")
    return multiscale_noise(starts, seed=seed, shape=shape).repeat(count, 1, 1, 1)  # element m*K + k starts from noise k


def _collect(layer, objective, index, result, starts: int) -> OIPs:
    m = len(index)
    return OIPs(layer=layer, objective=objective, index=list(index), images=result.images.reshape(m, starts, *result.images.shape[-3:]),
                activation=result.final.reshape(m, starts), start=result.start.reshape(m, starts),
                pre_final=result.pre_final.reshape(m, starts), steps=result.steps, seconds=result.seconds)


def checked_maps(table: LayerTable, layer: str, maps: list[int] | None) -> list[int]:
    """Return the maps to search in a conv layer (None: all of them); a layer or map that is not there is a UserError."""
    channels = table.require(layer, "conv", "OIPs are searched for conv layers").channels
    maps = list(range(channels)) if maps is None else list(maps)
    if bad := [m for m in maps if not 0 <= m < channels] or ([] if maps else ["none"]):
        raise UserError(f"map {bad[-1]} is out of range: {layer} has maps 0-{channels - 1}")
    return maps


def layer_oips(model: nn.Module, layer: str, maps: list[int] | None = None, objective: str = "mean",
               starts: int = 1, ascent: Ascent = Ascent(), seed: int = 0,
               input_shape: tuple[int, int, int] | None = None, progress: str | None = None) -> OIPs:
    """Return the OIPs of a conv layer's maps (default: all), found in one batched search (or several, where
    one would hold too much memory). `progress` names a bar over every step of every batch, with an ETA:
    64 maps of a ResNet50 layer are one batch of 96 steps of 11 s each.

    input_shape (C, H, W) is needed only for a model that does not record its own.
    """
    table = layer_table(model, input_shape)
    maps = checked_maps(table, layer, maps)
    searched, images = torch.tensor(maps).repeat_interleave(starts), _starts(len(maps), starts, seed, table.input_shape)
    size = _batch_size(table, layer, len(searched))
    batches = range(0, len(searched), size)
    with _frozen(model), ticking(progress, len(batches) * ascent.steps) as tick:
        parts = [ascend(LayerTarget(model, table, layer, searched[k:k + size], objective), images[k:k + size], ascent,
                        on_step=tick) for k in batches]
    return _collect(layer, objective, maps, _joined(parts), starts)


def _batch_size(table: LayerTable, layer: str, count: int) -> int:
    """How many searches go together: as many as keep the activations a step saves for its gradient under
    MEMORY_BUDGET. Autograd keeps about three tensors of each layer's size up to the target (its output, the
    pre-activation, a mask); 64 maps of ResNet50's layer3 at 224x224 in one batch peaked at 8 GB."""
    names = table.names()
    per_image = sum(math.prod(row.output_shape) for row in table.layers[: names.index(layer) + 1]) * 4 * 3
    return max(1, min(count, int(MEMORY_BUDGET // max(per_image, 1))))


def _joined(parts: list[AscentResult]) -> AscentResult:
    """One result from the batches of a search, in order; a map's OIP does not depend on its batch-mates."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda key: torch.cat([getattr(p, key) for p in parts])  # noqa: E731
    return AscentResult(images=cat("images"), start=cat("start"), final=cat("final"), pre_final=cat("pre_final"),
                        fired_from_start=cat("fired_from_start"), steps=parts[0].steps,
                        seconds=sum(p.seconds for p in parts))


def class_oips(model: nn.Module, classes: list[int], starts: int = 1, ascent: Ascent = Ascent(), seed: int = 0,
               anchors: torch.Tensor | None = None, input_shape: tuple[int, int, int] | None = None,
               progress: str | None = None) -> OIPs:
    """Return, per class, the input that maximises its logit: what makes a '4' a '4' to the network.

    anchors (classes, C, H, W), e.g. the class-mean images, with ascent.l2 > 0 keep each OIP near
    them, a simple pull towards the data manifold. `progress` names a bar over the steps.
    """
    table = layer_table(model, input_shape)
    with _frozen(model), ticking(progress, ascent.steps) as tick:
        target = LogitTarget(model, torch.tensor(classes).repeat_interleave(starts))
        anchor = None if anchors is None else anchors.repeat_interleave(starts, 0)
        result = ascend(target, _starts(len(classes), starts, seed, table.input_shape), ascent, anchor, on_step=tick)
    return _collect("logits", "logit", classes, result, starts)


def dead_reason(model: nn.Module, layer: str, map_index: int, pre_best: float, steps: int, starts: int) -> str:
    """Return why a map never fired: a proof where one exists (a first layer on the raw image), else the evidence."""
    table = layer_table(model)
    first_conv = table.convs[:1] == [layer] and table.layers[0].name == layer
    if first_conv and (table[layer].pre_activation or "").endswith(".conv"):  # a conv on the raw image, no batch norm
        w, b = conv_weight(model, layer)
        w = w[map_index]
        ceiling = w.clamp(min=0).sum().item() + (b[map_index].item() if b is not None else 0.0)
        if ceiling <= 0:
            return (f"dead for every input: with pixels in [0, 1] its pre-activation is at most "
                    f"{ceiling:.3g} (bias plus the positive kernel weights)")
    return (f"its pre-activation peaked at {pre_best:.3g} after {steps} steps from {starts} start(s); "
            f"the maps feeding it may never fire together")
