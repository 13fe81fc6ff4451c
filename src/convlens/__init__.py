"""convlens: train small CNNs on MNIST-like data fast, then look inside them.

The public API; every name here is re-exported from the module that owns it. The jobs (maps, oip,
explain, compare, sweep, ...) are what the CLI and the web page call too.
"""

from .lazy import lazy_namespace

# Every name loads its module on first use: `import convlens` (and so `convlens --version`) costs no torch,
# and a command that never draws, explains or compares never pays for matplotlib, Captum or scipy.
_LAZY = {"DataConfig": "config", "ModelConfig": "config", "RunConfig": "config", "TrainConfig": "config",
         "Dataset": "data", "load_dataset": "data", "UserError": "errors", "capture": "inspection.hooks",
         "class_patterns": "inspection.maps", "feature_maps": "inspection.maps", "top_activations": "inspection.maps",
         "probe": "inspection.probe", "Layer": "layers", "LayerTable": "layers", "layer_table": "layers",
         "PRESETS": "config", "RECIPES": "config", "build_model": "models", "Ascent": "oip", "OIPs": "oip",
         "class_oips": "oip", "layer_oips": "oip", "Run": "runs", "load_run": "runs", "TrainResult": "training",
         "evaluate": "training", "predict": "training", "train": "training",
         "compare_models": "compare", "linear_cka": "compare", "permute_maps": "compare",
         "attribute": "explain", "cascading_randomisation": "explain",
         "train_run": "jobs.train", "evaluate_run": "jobs.train", "sweep": "jobs.sweep",
         "maps": "jobs.maps", "kernels": "jobs.kernels", "patterns": "jobs.patterns", "top": "jobs.top",
         "probe_layers": ("jobs.probe", "probe"), "filters_demo": "jobs.filters", "layer_oip": "jobs.oip",
         "class_oip": "jobs.oip", "explain_image": ("jobs.explain", "explain"), "errors": "jobs.errors",
         "compare": "jobs.compare", "report": "jobs.report", "import_model": "jobs.import_model"}


__getattr__ = lazy_namespace(__name__, _LAZY)
__all__ = list(_LAZY)
