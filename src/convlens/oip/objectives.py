"""What an OIP search maximises: one number per batch element, on the activation and the pre-activation.

A target maps images (B, C, H, W) to (objective, pre_objective), both (B,). Element b is scored on
its own map or class, so a whole layer is one batch. The pre-objective is the same reduction before
the ReLU: where a map is zero everywhere, its gradient is zero too, but the pre-activation still
says which way is up.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..inspection.hooks import forward_until
from ..inspection.maps import iter_maps
from ..layers import LayerTable
from .options import OBJECTIVES


def _reducer(objective: str):
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[objective]


class LayerTarget:
    """Objective of map `maps[b]` of a conv layer for batch element b."""

    def __init__(self, model: nn.Module, table: LayerTable, layer: str, maps: torch.Tensor, objective: str = "mean"):
        table.require(layer, "conv", "OIPs are searched for conv layers")
        self.model, self.layer, self.maps = model, layer, maps
        self.reduce = _reducer(objective)
        # A silent map climbs towards its unit closest to firing: the mean pre-activation would
        # push an edge detector whose weights sum below zero to a black image, where it stays dead.
        self.reduce_pre = OBJECTIVES["center" if objective == "center" else "max"]
        self.pre_name = table[layer].pre_activation

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        names = [self.layer] + ([self.pre_name] if self.pre_name else [])
        out = forward_until(self.model, x, names, stop_at=self.layer)
        rows = torch.arange(len(x))
        act = self.reduce(out[self.layer][rows, self.maps])
        pre = self.reduce_pre(out[self.pre_name][rows, self.maps]) if self.pre_name else act
        return act, pre


class LogitTarget:
    """Logit of class `classes[b]` for batch element b: the class OIP objective."""

    def __init__(self, model: nn.Module, classes: torch.Tensor):
        self.model, self.classes = model, classes

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.model(x)[torch.arange(len(x)), self.classes]
        return logit, logit


@torch.no_grad()
def best_test_activation(model: nn.Module, images: torch.Tensor, layer: str | None,
                         objective: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Return, per map (or per logit when layer is None), the highest objective any image gives, and which image.

    This is the bar an OIP must clear: a pattern found by ascent should drive its map at least as
    hard as the best real digit does.
    """
    if layer is None:
        logits = torch.cat([model(images[s : s + 256]) for s in range(0, len(images), 256)])
        best, index = logits.max(0)
        return best, index
    reduce = _reducer(objective)
    best, index = None, None
    for start, maps in iter_maps(model, images, layer):
        values, where = reduce(maps).max(0)  # (C,) over this batch
        if best is None:
            best, index = values, where + start
        else:
            better = values > best
            best, index = torch.where(better, values, best), torch.where(better, where + start, index)
    return best, index
