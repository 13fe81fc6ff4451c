"""OIPs, original input patterns: the inputs that drive a map (or a class logit) hardest, found by
gradient ascent from multi-scale noise. Small pieces, composed in search.py:

    options.py     what a user chooses: the Ascent settings, the image kinds, the objectives (no torch)
    noise.py       where a search starts (seeded multi-scale noise)
    objectives.py  what is maximised: a map's mean, centre or max, or a logit, with its pre-activation
    spectral.py    Lucid's image: a Fourier spectrum in decorrelated colour
    transforms.py  jitter, pad, scale, rotate: robustness, so an OIP is not one adversarial pixel pattern
    ascent.py      how: normalised gradient steps, jitter, penalties, the precursor stage, the clamp
    search.py      whole layers and classes at once, the batch index being the map index

Names load their modules on first use, so reading the options costs no torch.
"""

from ..lazy import lazy_namespace

_NAMES = {"OBJECTIVES": "options", "Ascent": "options", "AscentResult": "ascent", "ascend": "ascent",
          "multiscale_noise": "noise", "LayerTarget": "objectives", "LogitTarget": "objectives",
          "best_test_activation": "objectives", "OIPs": "search", "class_oips": "search", "dead_reason": "search",
          "layer_oips": "search"}
__getattr__ = lazy_namespace(__name__, _NAMES)
__all__ = list(_NAMES)
