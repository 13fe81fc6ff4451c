"""Do two trainings learn the same filters? Map matching, CKA and prediction agreement between runs.

    similarity.py  pure functions: map correlations, Hungarian matching, kernel similarity, linear CKA
    align.py       permute a model's maps consistently through the network (for tests and alignment)
    runs_compare.py two models on the same images: every measure for every layer, with baselines
"""

from .align import permute_maps
from .runs_compare import Comparison, compare_models
from .similarity import kernel_similarity, linear_cka, map_correlation, match

__all__ = ["Comparison", "compare_models", "kernel_similarity", "linear_cka", "map_correlation", "match", "permute_maps"]
