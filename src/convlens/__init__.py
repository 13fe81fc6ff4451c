"""convlens: train small CNNs on MNIST-like data fast, then look inside them.

The public API; every name here is re-exported from the module that owns it.
"""

import importlib

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import UserError
from .inspect.hooks import capture, conv_layers, map_layers
from .inspect.maps import class_patterns, feature_maps, field_geometry, top_activations
from .inspect.probe import probe
from .oip import Ascent, OIPs, class_oips, layer_oips
from .models import PRESETS, build_model, summary
from .runs import Run, load_run
from .training import TrainResult, evaluate, predict, train
from .workflows import evaluate_run, train_run

# Captum and scipy take over a second to import; these names load their module on first use, so a
# command that never explains or compares never pays for them.
_LAZY = {"compare_models": "compare", "linear_cka": "compare", "permute_maps": "compare",
         "attribute": "explain", "cascading_randomisation": "explain"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'convlens' has no attribute {name!r}")


__all__ = [
    "DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "Dataset", "load_dataset", "UserError",
    "PRESETS", "build_model", "summary", "Run", "load_run", "TrainResult", "evaluate", "predict", "train",
    "evaluate_run", "train_run", "capture", "conv_layers", "map_layers", "class_patterns", "feature_maps",
    "field_geometry", "top_activations", "probe", "Ascent", "OIPs", "class_oips", "layer_oips",
    "compare_models", "linear_cka", "permute_maps", "attribute", "cascading_randomisation",
]
