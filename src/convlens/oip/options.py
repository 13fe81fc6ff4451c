"""What a user chooses for an OIP search: how it steps (Ascent), how the image is parameterised, what is maximised.

No torch here: `convlens oip --help` reads these to list its flags, and must answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGES = ("auto", "pixels", "spectral")


@dataclass(frozen=True)
class Ascent:
    """How a search steps. Penalty weights are relative to the objective's gradient, so one value suits every layer."""

    steps: int = 96  # gradient steps in all, precursor stage included
    lr: float = 0.1  # pixel change per step for a unit-RMS gradient; decays to a tenth on a cosine
    jitter: int = 0  # shift the image by up to this many pixels each step: smoother OIPs, lower peaks (centre/max objectives suffer)
    tv: float = 0.0  # total-variation penalty weight: smoother OIPs
    l2: float = 0.0  # pull towards the anchor image (black by default): sparser OIPs, or class OIPs near the data
    precursor: int = 0  # side of a coarse first stage (e.g. 14), upscaled and refined; 0 for none
    precursor_share: float = 0.5  # share of the steps spent at the precursor's resolution
    soft: float = 0.3  # soft ReLU gradients with this temperature for the first half of the steps; 0 for exact ones
    seed: int = 0  # seeds the noise starts and the jitter shifts: the same seed gives the same OIPs
    image: str = "auto"  # pixels (from multi-scale noise), spectral (Lucid's Fourier, decorrelated colour, robust to jitter, scale and rotation) or auto: spectral for colour images of 64 px or more


def _center(maps):
    h, w = maps.shape[-2:]
    return maps[..., h // 2, w // 2]


# Reductions of maps (..., H, W) to (...): the whole map's mean, the unit at the centre, or the peak.
OBJECTIVES = {
    "mean": lambda m: m.mean((-2, -1)),
    "center": _center,
    "max": lambda m: m.amax((-2, -1)),
}
