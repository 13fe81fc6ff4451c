"""Why this answer: attributions through Captum, made readable and checked; any input size and colour.

    methods.py  the methods by name (saliency, ig, gradcam, occlusion, guided-backprop), batched
    sanity.py   Adebayo et al.'s cascading randomisation: does a map depend on the model at all?

Names load their modules on first use: `convlens explain --help` lists METHODS without Captum's 2.5 s import.
"""

from ..lazy import lazy_namespace

METHODS = ("saliency", "ig", "gradcam", "occlusion", "guided-backprop")  # methods.py registers one adapter each

_NAMES = {"Attribution": "methods", "attribute": "methods", "cascading_randomisation": "sanity",
          "rank_correlation": "sanity"}
__getattr__ = lazy_namespace(__name__, _NAMES)
__all__ = ["METHODS", *_NAMES]
