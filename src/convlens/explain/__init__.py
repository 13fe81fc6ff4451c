"""Why this answer: attributions through Captum, made readable and checked; any input size and colour.

    methods.py  the methods by name (saliency, ig, gradcam, occlusion, guided-backprop), batched
    sanity.py   Adebayo et al.'s cascading randomisation: does a map depend on the model at all?
"""

from .methods import METHODS, Attribution, attribute
from .sanity import cascading_randomisation, rank_correlation

__all__ = ["METHODS", "Attribution", "attribute", "cascading_randomisation", "rank_correlation"]
