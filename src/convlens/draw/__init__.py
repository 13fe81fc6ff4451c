"""Drawing: the only part of convlens that imports matplotlib. Figure functions return Figures.

This file imports nothing, so the CLI can offer the drawing choices without loading matplotlib.
"""

CMAPS = ("gray", "jet", "viridis")  # colour maps for feature maps
SCALES = ("layer", "map")  # one colour range per layer, or each map stretched alone
SAVE_DPI = 110  # pixels per inch of every PNG convlens writes
MOSAIC_INCHES = 12.0  # widest mosaic of maps drawn at more than one pixel per map pixel (12 in: 1,320 px)
