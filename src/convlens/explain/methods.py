"""Attribution methods by name, all through Captum; each returns maps (B, 28, 28) for targets (B,).

Inputs are float images (B, 1, 28, 28) in [0, 1]. The baseline for integrated gradients and the
fill for occlusion is a black image: MNIST's background, so "absent ink" is what they compare with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from captum.attr import GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from ..errors import UserError
from ..inspect.hooks import conv_layers, layer_module, require_conv_layer

METHODS = ("saliency", "ig", "gradcam", "occlusion", "guided-backprop")
IG_INTERNAL_BATCH = 512  # images x steps per forward pass: bounds IG's memory whatever the batch size


@dataclass
class Attribution:
    method: str
    maps: torch.Tensor  # (B, 28, 28), signed: positive pushes towards the target class
    delta: torch.Tensor | None = None  # ig: f(x) - f(baseline) - sum(maps), per image
    gap: torch.Tensor | None = None  # ig: f(x) - f(baseline), the amount the maps must add up to
    notes: dict = field(default_factory=dict)


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, *, steps: int = 50,
              layer: str | None = None, patch: int = 4, stride: int = 2, completeness: bool = True) -> Attribution:
    """Return the attribution of the target logits to the pixels of x by one method.

    completeness=False skips integrated gradients' check (delta and gap): four forward passes,
    a third of the live page's time per image.
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'; choose from {', '.join(METHODS)}")
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    if method == "saliency":
        maps = Saliency(model).attribute(x, target=target, abs=False)
        return Attribution(method, maps[:, 0].detach())
    if method == "ig" and not completeness:
        maps = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                                    method="gausslegendre", internal_batch_size=IG_INTERNAL_BATCH)
        return Attribution(method, maps[:, 0].detach(), notes={"steps": steps})
    if method == "ig":
        baseline = torch.zeros_like(x)
        maps, delta = IntegratedGradients(model).attribute(
            x, baselines=baseline, target=target, n_steps=steps, method="gausslegendre",
            internal_batch_size=IG_INTERNAL_BATCH, return_convergence_delta=True)
        with torch.no_grad():
            rows = torch.arange(len(x))
            gap = model(x)[rows, target] - model(baseline)[rows, target]
        return Attribution(method, maps[:, 0].detach(), delta=-delta.detach(), gap=gap.detach(),
                           notes={"steps": steps})
    if method == "gradcam":
        layer = layer or conv_layers(model)[-1]
        require_conv_layer(model, layer, "--layer for gradcam must be a conv layer")
        cam = LayerGradCam(model, layer_module(model, layer)).attribute(x, target=target, relu_attributions=True)
        maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return Attribution(method, maps[:, 0].detach(), notes={"layer": layer})
    if method == "occlusion":
        if not 1 <= stride <= patch <= 28:
            raise UserError(f"occlusion needs 1 <= stride <= patch <= 28 (got patch {patch}, stride {stride})")
        maps = Occlusion(model).attribute(x, target=target, sliding_window_shapes=(1, patch, patch),
                                          strides=(1, stride, stride), baselines=0.0)
        return Attribution(method, maps[:, 0].detach(), notes={"patch": patch, "stride": stride})
    with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks on every call
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        maps = GuidedBackprop(model).attribute(x, target=target)
    return Attribution(method, maps[:, 0].detach())
