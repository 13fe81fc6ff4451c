"""Attribution methods by name, all through Captum; each returns maps (B, H, W) for targets (B,).

Inputs are float images (B, C, H, W) in [0, 1]; colour attributions are summed over channels. The
baseline for integrated gradients and the fill for occlusion is a black image: MNIST's background,
so "absent ink" is what they compare with.

Each method is one small adapter registered by name (Captum's one-call shape: method(model).attribute(x,
target=...)), so the CLI, the web page and the tests list the same methods and a new one is one function.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

with warnings.catch_warnings():  # Captum imports tqdm.auto, which warns in a Jupyter kernel without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    from captum.attr import GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

from ..errors import UserError
from ..inspection.hooks import layer_module
from ..layers import layer_table
from . import METHODS

IG_INTERNAL_BATCH = 512  # images x steps per forward pass: bounds IG's memory whatever the batch size


@dataclass
class Attribution:
    method: str
    maps: torch.Tensor  # (B, H, W), signed: positive pushes towards the target class
    delta: torch.Tensor | None = None  # ig: f(x) - f(baseline) - sum(maps), per image
    gap: torch.Tensor | None = None  # ig: f(x) - f(baseline), the amount the maps must add up to
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """Settings some methods read; each method ignores the others."""

    steps: int = 50  # integrated gradients: Gauss-Legendre steps
    layer: str | None = None  # gradcam: the conv layer (default: the last)
    patch: int = 4  # occlusion: side of the grey-out square, in pixels
    stride: int = 2  # occlusion: pixels between squares
    completeness: bool = True  # integrated gradients: also compute delta and gap (four forward passes more)


Adapter = Callable[[nn.Module, torch.Tensor, torch.Tensor, Options], Attribution]
REGISTRY: dict[str, Adapter] = {}


def register(name: str):
    """Register an adapter under one of the METHODS' names."""
    assert name in METHODS, f"{name} is not listed in explain.METHODS"

    def add(adapter: Adapter) -> Adapter:
        REGISTRY[name] = adapter
        return adapter
    return add


def _pixels(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): a pixel's attribution is the sum over its channels."""
    return maps.sum(1).detach()


@register("saliency")
def _saliency(model, x, target, o: Options) -> Attribution:
    return Attribution("saliency", _pixels(Saliency(model).attribute(x, target=target, abs=False)))


@register("ig")
def _integrated_gradients(model, x, target, o: Options) -> Attribution:
    baseline = torch.zeros_like(x)
    ig = IntegratedGradients(model)
    kwargs = dict(baselines=baseline, target=target, n_steps=o.steps, method="gausslegendre",
                  internal_batch_size=IG_INTERNAL_BATCH)
    if not o.completeness:
        return Attribution("ig", _pixels(ig.attribute(x, **kwargs)), notes={"steps": o.steps})
    maps, delta = ig.attribute(x, return_convergence_delta=True, **kwargs)
    with torch.no_grad():
        rows = torch.arange(len(x))
        gap = model(x)[rows, target] - model(baseline)[rows, target]
    return Attribution("ig", _pixels(maps), delta=-delta.detach(), gap=gap.detach(), notes={"steps": o.steps})


@register("gradcam")
def _gradcam(model, x, target, o: Options) -> Attribution:
    table = layer_table(model, tuple(x.shape[1:]))
    if not table.convs:
        raise UserError("gradcam needs a conv layer; the model has none")
    layer = o.layer or table.convs[-1]
    table.require(layer, "conv", "the gradcam layer must be a conv layer")
    cam = LayerGradCam(model, layer_module(model, layer)).attribute(x, target=target, relu_attributions=True)
    maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return Attribution("gradcam", maps[:, 0].detach(), notes={"layer": layer})


@register("occlusion")
def _occlusion(model, x, target, o: Options) -> Attribution:
    side = min(x.shape[-2:])
    if not 1 <= o.stride <= o.patch <= side:
        raise UserError(f"occlusion needs 1 <= stride <= patch <= {side} (got patch {o.patch}, stride {o.stride})")
    maps = Occlusion(model).attribute(x, target=target, sliding_window_shapes=(x.shape[1], o.patch, o.patch),
                                      strides=(x.shape[1], o.stride, o.stride), baselines=0.0)
    return Attribution("occlusion", maps[:, 0].detach(), notes={"patch": o.patch, "stride": o.stride})


@register("guided-backprop")
def _guided_backprop(model, x, target, o: Options) -> Attribution:
    with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks on every call
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return Attribution("guided-backprop", _pixels(GuidedBackprop(model).attribute(x, target=target)))


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, **options) -> Attribution:
    """Return the attribution of the target logits to the pixels of x (B, C, H, W) by one method.

    options are the fields of Options: steps, layer, patch, stride, completeness.
    """
    if method not in REGISTRY:
        raise UserError(f"unknown method '{method}'; choose from {', '.join(REGISTRY)}")
    model.eval()
    return REGISTRY[method](model, x.detach().clone().requires_grad_(True), target, Options(**options))
