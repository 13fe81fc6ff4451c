"""OIPs, original input patterns: the inputs that drive a map (or a class logit) hardest, found by
gradient ascent from multi-scale noise. Small pieces, composed in search.py:

    noise.py       where a search starts (seeded multi-scale noise)
    objectives.py  what is maximised: a map's mean, centre or max, or a logit, with its pre-activation
    ascent.py      how: normalised gradient steps, jitter, penalties, the precursor stage, the clamp
    search.py      whole layers and classes at once, the batch index being the map index
"""

from .ascent import Ascent, AscentResult, ascend
from .noise import multiscale_noise
from .objectives import OBJECTIVES, LayerTarget, LogitTarget, best_test_activation
from .search import OIPs, class_oips, dead_reason, layer_oips

__all__ = ["OBJECTIVES", "Ascent", "AscentResult", "LayerTarget", "LogitTarget", "OIPs", "ascend",
           "best_test_activation", "class_oips", "dead_reason", "layer_oips", "multiscale_noise"]
