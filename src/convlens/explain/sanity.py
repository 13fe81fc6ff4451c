"""Sanity checks for saliency maps (Adebayo et al. 2018): randomise the weights from the top down.

If a method's map barely changes when the layers that produce the decision are replaced by random
ones, the map shows the input (edges of the digit), not what the model does with it.
"""

from __future__ import annotations

import copy

import torch
from scipy.stats import rankdata
from torch import nn

from ..inspection.hooks import layer_module
from ..layers import layer_table
from ..progress import track
from .methods import attribute

PASSES_BELOW = 0.5  # a map whose rank correlation with the trained one falls this low somewhere depends on the weights


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return Spearman's rank correlation per image between maps a and b (B, H, W), ties sharing their mean rank.

    Mean ranks matter here: integrated gradients are exactly zero on every black pixel, and ranking
    those ties by position would make any two such maps look alike.
    """
    ra = torch.from_numpy(rankdata(a.flatten(1).numpy(), axis=1))
    rb = torch.from_numpy(rankdata(b.flatten(1).numpy(), axis=1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp(min=1e-12)


def weighted_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
    """Return the layers with weights, from the output back to the input."""
    return list(reversed(layer_table(model, input_shape).weighted))


def cascading_randomisation(model: nn.Module, x: torch.Tensor, target: torch.Tensor, methods: list[str],
                            seed: int = 2018, **options) -> dict:
    """Return, per method, the rank correlation of |map| with the original's after randomising each layer in turn.

    Stage k has the top k weighted layers re-initialised (cumulatively, as in the paper); values are
    means over the images. Absolute values are compared because a sign flip is still the same evidence.
    "verdicts" says, per method, what its whole cascade shows (see `verdict`).
    """
    layers = weighted_layers(model, tuple(x.shape[1:]))
    original = {m: attribute(model, x, target, m, **options).maps.abs() for m in methods}
    randomised = copy.deepcopy(model)
    torch.manual_seed(seed)
    result = {"layers": layers, "methods": {m: [] for m in methods}, "maps": {m: [original[m]] for m in methods}}
    for name in track(layers, f"randomising {len(layers)} layers from the top"):
        for module in layer_module(randomised, name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for m in methods:
            maps = attribute(randomised, x, target, m, **options).maps.abs()
            result["methods"][m].append(rank_correlation(original[m], maps).mean().item())
            result["maps"][m].append(maps)
    result["verdicts"] = {m: verdict(result["methods"][m], layers) for m in methods}
    return result


def verdict(correlations: list[float], layers: list[str]) -> str:
    """Return what a method's cascade says, judged on its lowest rho, as Adebayo et al. read the whole curve:
    a map that decorrelates at some stage depends on those weights, even if later stages drift back."""
    low = min(range(len(correlations)), key=correlations.__getitem__)
    lowest, last = correlations[low], correlations[-1]
    if lowest <= PASSES_BELOW:
        return (f"changes with the weights: rho falls to {lowest:.2f} (randomised down to {layers[low]}), "
                f"{last:.2f} with all layers random; it depends on what the model learned")
    return (f"barely depends on the weights: rho stays at {lowest:.2f} or more through the cascade ({last:.2f} with "
            "all layers random); it shows the input as much as the model")
