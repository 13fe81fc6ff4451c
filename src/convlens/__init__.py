"""convlens: train small CNNs on MNIST-like data fast, then look inside them.

The public API; every name here is re-exported from the module that owns it. The jobs (maps, oip,
explain, compare, sweep, ...) are what the CLI and the web page call too.
"""

import importlib

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import UserError
from .inspection.hooks import capture
from .inspection.maps import class_patterns, feature_maps, top_activations
from .inspection.probe import probe
from .layers import Layer, LayerTable, layer_table
from .models import PRESETS, build_model
from .oip import Ascent, OIPs, class_oips, layer_oips
from .runs import Run, load_run
from .training import TrainResult, evaluate, predict, train

# Captum, scipy and matplotlib take over a second to import; these names load their module on
# first use, so a command that never draws, explains or compares never pays for them.
_LAZY = {"compare_models": "compare", "linear_cka": "compare", "permute_maps": "compare",
         "attribute": "explain", "cascading_randomisation": "explain",
         "train_run": "jobs.train", "evaluate_run": "jobs.train", "sweep": "jobs.sweep",
         "maps": "jobs.maps", "kernels": "jobs.kernels", "patterns": "jobs.patterns", "top": "jobs.top",
         "probe_layers": ("jobs.probe", "probe"), "filters_demo": "jobs.filters", "layer_oip": "jobs.oip",
         "class_oip": "jobs.oip", "explain_image": ("jobs.explain", "explain"), "errors": "jobs.errors",
         "compare": "jobs.compare", "report": "jobs.report", "import_model": "jobs.import_model"}


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'convlens' has no attribute {name!r}")


__all__ = [
    "DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "Dataset", "load_dataset", "UserError",
    "PRESETS", "build_model", "Layer", "LayerTable", "layer_table", "Run", "load_run", "TrainResult", "evaluate",
    "predict", "train", "capture", "class_patterns", "feature_maps", "top_activations", "probe", "Ascent", "OIPs",
    "class_oips", "layer_oips", *_LAZY,
]
