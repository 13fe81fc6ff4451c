"""The optimisation loop of an OIP search: normalised gradient ascent on the pixels, in [0, 1], or Adam on
a Fourier spectrum with decorrelated colour and transform robustness (Lucid's, spectral.py, transforms.py).

Every batch element is its own search (the model is in eval mode, so elements never interact), and
one backward pass gives every element's gradient at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from .options import IMAGES, Ascent
from .spectral import LR, Spectral
from .transforms import Jitter, robust


@dataclass
class AscentResult:
    images: torch.Tensor  # (B, C, H, W) in [0, 1]
    start: torch.Tensor  # (B,) objective at the start image
    final: torch.Tensor  # (B,) objective at the result, unshifted
    pre_final: torch.Tensor  # (B,) the same on the pre-activation: how far from firing a silent map stayed
    fired_from_start: torch.Tensor  # (B,) bool: the start image already gave a positive objective
    steps: int
    seconds: float


class _SoftReLU(torch.autograd.Function):
    """ReLU forward; backward as if it were softplus(x / t) * t, so units just below zero still get gradient."""

    @staticmethod
    def forward(ctx, x, t):
        ctx.save_for_backward(x)
        ctx.t = t
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x / ctx.t), None


@contextmanager
def soft_relu_gradients(model, t: float):
    """Within the block every nn.ReLU of the model passes soft gradients (values unchanged)."""
    handles = [m.register_forward_hook(lambda _m, inputs, _out: _SoftReLU.apply(inputs[0], t))
               for m in model.modules() if isinstance(m, torch.nn.ReLU)] if t > 0 else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Return each element's gradient scaled to unit RMS, so every map moves at the same pace."""
    return g / (g.pow(2).mean(dim=tuple(range(1, g.dim())), keepdim=True).sqrt() + 1e-12)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Return each image's summed absolute difference between neighbouring pixels, (B,)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().sum((1, 2, 3)) + (x[..., :, 1:] - x[..., :, :-1]).abs().sum((1, 2, 3))


class Penalty:
    """A term the ascent moves away from: `weight` times its unit-RMS gradient is subtracted from each step.

    Penalties compose as a list, like Lucent's objectives; a new one is a subclass with `gradient`.
    """

    def __init__(self, weight: float):
        self.weight = weight

    def gradient(self, p: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TotalVariation(Penalty):
    """Smoother OIPs: penalise differences between neighbouring pixels."""

    def gradient(self, p, anchor):
        p = p.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(total_variation(p).sum(), p)
        return grad


class Distance(Penalty):
    """Sparser OIPs, or class OIPs near the data: pull towards the anchor image (black unless given)."""

    def gradient(self, p, anchor):
        return p.detach() - anchor


def penalties(ascent: "Ascent") -> list[Penalty]:
    """Return the penalty terms an Ascent's settings switch on."""
    return [term for term in (TotalVariation(ascent.tv), Distance(ascent.l2)) if term.weight]


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    if x.shape[-1] == side:
        return x
    mode = "area" if x.shape[-1] > side else "bilinear"
    return F.interpolate(x, size=(side, side), mode=mode, **({} if mode == "area" else {"align_corners": False}))


def _stages(a: Ascent, size: int) -> list[tuple[int, int]]:
    if not a.precursor or a.precursor >= size:
        return [(size, a.steps)]
    coarse = round(a.steps * a.precursor_share)
    return [(a.precursor, coarse), (size, a.steps - coarse)]


def image_style(ascent: Ascent, shape: tuple[int, ...]) -> str:
    """How the images are made for inputs of `shape` (C, H, W): pixels suit small grey digits, whose nets see
    strokes; the spectrum suits big colour nets, which answer raw pixel steps with grain and saturated stripes."""
    if ascent.image not in IMAGES:
        raise UserError(f"image '{ascent.image}' is not one of {', '.join(IMAGES)}")
    if ascent.image != "auto":
        return ascent.image
    return "spectral" if shape[-3] == 3 and min(shape[-2:]) >= 64 else "pixels"


def ascend(target, start: torch.Tensor, ascent: Ascent = Ascent(), anchor: torch.Tensor | None = None,
           on_step: Callable[[], None] = lambda: None) -> AscentResult:
    """Return the images reached by ascending `target` from `start` (B, C, H, W).

    target(x) returns (objective, pre_objective), both (B,). An element whose objective is zero,
    a map silent for the whole image, climbs its pre-objective instead until it fires, then the
    objective itself: this is the dead-map path.
    For the first half of the steps every ReLU passes soft gradients: a unit just below zero still
    learns which way is up, which is what lets the many units of a map's mean turn on together
    (measured on `simple`, conv1: 75% of maps beat the best test digit with exact gradients, 100% with soft).
    The precursor stage optimises a coarse image that is upsampled before the model sees it. Coarse
    pixels move whole blobs, which is how patterns with large-scale structure are found quickly.
    `on_step` is called after every step (a progress bar's tick).
    """
    if image_style(ascent, start.shape[1:]) == "spectral":
        return ascend_spectrum(target, start, ascent, on_step)
    t0 = time.perf_counter()
    size = start.shape[-1]
    anchor = torch.zeros_like(start) if anchor is None else anchor
    with torch.no_grad():
        start_value, _ = target(start)
    transforms = [Jitter(ascent.jitter, torch.Generator().manual_seed(ascent.seed))] if ascent.jitter > 0 else []
    terms = penalties(ascent)
    x, step = start.detach(), 0
    for side, n in _stages(ascent, size):
        p, goal = _resize(x, side).detach(), _resize(anchor, side)
        for _ in range(n):
            p.requires_grad_(True)
            soft = ascent.soft if step < ascent.steps // 2 else 0.0
            seen = _resize(p, size)
            for transform in transforms:
                seen = transform(seen)
            with soft_relu_gradients(target.model, soft):
                act, pre = target(seen)
            score = torch.where(act > 0, act, pre)
            (grad,) = torch.autograd.grad(score.sum(), p)
            direction = _unit(grad)
            for term in terms:
                direction -= term.weight * _unit(term.gradient(p, goal))
            lr = ascent.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(ascent.steps, 1))))
            p = (p.detach() + lr * direction).clamp_(0.0, 1.0)
            step += 1
            on_step()
        x = _resize(p, size).detach()
    with torch.no_grad():
        final, pre_final = target(x)
    return AscentResult(images=x, start=start_value, final=final, pre_final=pre_final,
                        fired_from_start=start_value > 0, steps=step, seconds=time.perf_counter() - t0)


def ascend_spectrum(target, start: torch.Tensor, ascent: Ascent = Ascent(),
                    on_step: Callable[[], None] = lambda: None) -> AscentResult:
    """Return the images reached by Adam on the spectra of `start`, each step seen through Lucid's transforms;
    the objective (or, while a map is silent, its pre-objective) as in ascend."""
    t0 = time.perf_counter()
    spectral = Spectral(tuple(start.shape[1:]))
    transforms = robust(start.shape[-1], torch.Generator().manual_seed(ascent.seed))
    parameters = spectral.parameters_of(start).requires_grad_(True)
    optimiser = torch.optim.Adam([parameters], lr=LR)
    with torch.no_grad():
        start_value, _ = target(spectral.image(parameters))
    for step in range(ascent.steps):
        seen = spectral.image(parameters)
        for transform in transforms:
            seen = transform(seen)
        with soft_relu_gradients(target.model, ascent.soft if step < ascent.steps // 2 else 0.0):
            act, pre = target(seen)
        optimiser.zero_grad()
        (-torch.where(act > 0, act, pre).sum()).backward()
        optimiser.step()
        on_step()
    with torch.no_grad():
        x = spectral.image(parameters)
        final, pre_final = target(x)
    return AscentResult(images=x.detach(), start=start_value, final=final, pre_final=pre_final,
                        fired_from_start=start_value > 0, steps=ascent.steps, seconds=time.perf_counter() - t0)
