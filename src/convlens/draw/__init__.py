"""Drawing: the only part of convlens that imports matplotlib. Figure functions return Figures.

This file imports nothing, so the CLI can offer the drawing choices without loading matplotlib.
"""

CMAPS = ("gray", "jet", "viridis")  # colour maps for feature maps
SCALES = ("layer", "map")  # one colour range per layer, or each map stretched alone
