"""Models convlens did not train: each importer turns a file into the one layer graph of graph.py.

    keras.py          Keras 3 .keras and legacy .h5, read with zipfile and h5py (no TensorFlow)
    onnx.py           ONNX graphs, read with the onnx package
    torch_export.py   PyTorch: an nn.Module (traced with torch.export) or a saved .pt2 program

`import_file` picks the importer by the file's contents and `import_module` takes a module; both
apply the preprocessing the user names and return a ready GraphNet with where it came from.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..errors import UserError
from ..storage import file_sha256
from . import keras, onnx, torch_export
from .graph import GraphNet, checked_graph

IMPORTER_VERSION = 1
FORMATS = {"keras": "Keras 3 .keras or legacy HDF5 .h5", "onnx": "ONNX .onnx",
           "torch-export": "PyTorch .pt2 (torch.export.save)"}


@dataclass
class Imported:
    model: GraphNet  # eval mode, weights loaded
    graph: dict  # what graph.json holds
    source: dict  # format, file, sha256, importer and framework versions


def detect(path: Path) -> str:
    """Return the format of a model file from its first bytes, or raise UserError naming the formats read."""
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError, ValueError, EOFError):  # all damage
            raise UserError(f"{path} is a damaged zip archive (truncated?); save or copy the model again") from None
        if "config.json" in names:
            return "keras"
        if any(n.endswith(("archive_format", "serialized_exported_program.json")) for n in names):
            return "torch-export"
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":  # an ONNX protobuf opens with its ir_version field
        return "onnx"
    raise UserError(f"{path} is not a model file convlens reads; formats: {', '.join(FORMATS.values())}")


def import_file(path: str | Path, mean: list[float] | None = None, std: list[float] | None = None) -> Imported:
    """Return the model in a file as a GraphNet, with `mean`/`std` (in [0, 1] pixel units) applied first if given."""
    path = Path(path)
    if not path.is_file():  # a FIFO or a device named .keras would hang or never end: only regular files are read
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"model file {path} {what}; give the path of a saved model")
    kind = detect(path)
    try:
        if kind == "keras":
            config, weights, version = keras.read(path)
            graph, tensors = keras.to_graph(config, weights)
        elif kind == "onnx":
            graph, tensors, version = onnx.to_graph(onnx.read(path))
        else:
            graph, tensors = torch_export.to_graph(torch_export.load(path))
            version = torch.__version__
    except UserError as e:  # every refusal names the file, as the readers' own messages do
        if str(path) in str(e):
            raise
        raise UserError(f"{path}: {e}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, ZeroDivisionError) as e:
        # The file parsed, but what it describes is not shaped like a model of its format (a config.json that
        # is a list, a layer without a class_name, a dict where a name belongs): the file's fault, not ours.
        raise UserError(f"{path} describes its model in a form {FORMATS[kind]} files never take "
                        f"({type(e).__name__}: {str(e)[:120]}); save or export it again") from None
    return _finish(graph, tensors, mean, std, {"format": kind, "file": path.name, "sha256": file_sha256(path),
                                               "importer": f"convlens-{kind} {IMPORTER_VERSION}",
                                               "framework_version": version})


def import_module(module: nn.Module, input_shape: tuple[int, int, int], mean: list[float] | None = None,
                  std: list[float] | None = None) -> Imported:
    """Return a PyTorch module as a GraphNet, traced with torch.export for images of `input_shape` (C, H, W).

    The sha256 is that of the module's weights (as safetensors bytes), so the same weights give the same digest.
    """
    graph, tensors = torch_export.to_graph(torch_export.export(module, tuple(input_shape)))
    digest = hashlib.sha256(safetensors_bytes({k: v.detach().contiguous().cpu()
                                               for k, v in module.state_dict().items()})).hexdigest()
    return _finish(graph, tensors, mean, std, {"format": "pytorch", "file": type(module).__name__, "sha256": digest,
                                               "importer": f"convlens-torch-export {IMPORTER_VERSION}",
                                               "framework_version": torch.__version__})


def _finish(graph: dict, tensors: dict, mean, std, source: dict) -> Imported:
    if mean is not None or std is not None:
        graph = with_normalisation(graph, mean or [0.0], std or [1.0])
    # The checks a reopened graph.json gets, before any module is built: a damaged file can still convert into
    # a graph that does not hold together (a flipped bit gave a conv 7 groups for 32 channels).
    checked_graph(graph, {k: tuple(np.shape(v)) for k, v in tensors.items()}, source["file"])
    model = _loaded(graph, tensors)
    graph["source"] = source
    return Imported(model, graph, source)


def with_normalisation(graph: dict, mean: list[float], std: list[float]) -> dict:
    """Return the graph with (x - mean) / std applied to its input first."""
    if any(s <= 0 for s in std):
        raise UserError(f"std must be positive (got {std})")
    node = {"name": "preprocess", "op": "affine", "inputs": ["input"], "scale": [1 / s for s in std],
            "offset": [-m / s for m, s in zip(mean, std)] if len(mean) == len(std) else [-mean[0] / std[0]]}
    for n in graph["nodes"]:
        n["inputs"] = ["preprocess" if i == "input" else i for i in n["inputs"]]
    return graph | {"nodes": [node] + graph["nodes"]}


def _loaded(graph: dict, tensors: dict[str, np.ndarray]) -> GraphNet:
    """Build the GraphNet and load the weights."""
    model = GraphNet(graph).eval()
    state = {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}  # copies: inputs may be read-only
    try:
        model.load_state_dict(state | _unchanged_buffers(model, state), strict=True)
    except RuntimeError as e:
        raise UserError(f"the weights do not fit the model's layers ({str(e).splitlines()[-1].strip()}); "
                        "the file may be damaged") from None
    return model


def _unchanged_buffers(model: GraphNet, state: dict) -> dict:
    # Buffers the file has no value for (batch norm's counter, the affine constants) keep their own.
    return {k: v for k, v in model.state_dict().items() if k not in state}
