"""Keras models without TensorFlow: Keras 3 `.keras` (a zip of config.json and model.weights.h5) and legacy HDF5 `.h5`.

Read with zipfile and h5py. Kernels move from HWIO to OIHW; the first Dense after a Flatten gets
its inputs re-ordered from Keras's (H, W, C) flattening to PyTorch's (C, H, W); a final softmax is
dropped so the last layer gives logits; graph.fuse makes a Conv2D or Dense with no activation of
its own one layer with the BatchNormalization and Activation that follow it, so `conv2d` is the
map after its activation, as Keras users read it.

Where Keras 3 keeps the weights: `layers/<snake_case class name>[_N]/vars/<i>` in model.layers
order (not the layers' own names); legacy HDF5 keeps them under `model_weights/<layer name>`,
listed by its `weight_names` attribute.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .graph import FORMAT, VERSION, GraphNet, fuse, module_name
from .limits import unpacked_limit

SUPPORTED = ("InputLayer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "GlobalAveragePooling2D", "Dense",
             "Dropout", "BatchNormalization", "Activation", "ReLU", "Rescaling", "Add")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "selu", "elu", "linear", "gelu", "softplus", "swish", "silu")


def read(path: Path) -> tuple[dict, dict[str, list[np.ndarray]], str]:
    """Return (model config, {layer name: its weights in Keras's order}, Keras version) of a .keras or .h5 file."""
    limit = unpacked_limit(path.stat().st_size)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if (unpacked := sum(info.file_size for info in archive.infolist())) > limit:
                    raise UserError(f"{path} unpacks to {unpacked:,} bytes, far more than a model of its size "
                                    "(a zip bomb?); refused")
                config = json.loads(archive.read("config.json"))
                meta = json.loads(archive.read("metadata.json")) if "metadata.json" in archive.namelist() else {}
                with _hdf5(archive.read("model.weights.h5"), path, limit) as f:
                    return config, _keras3_weights(config, f), meta.get("keras_version", "3")
        with _hdf5(path.read_bytes(), path, limit) as f:
            if "model_config" not in f.attrs:
                raise UserError(f"{path} is an HDF5 file without a model_config: weights only? save the whole "
                                "model with model.save()")
            raw = f.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            version = f.attrs.get("keras_version", b"2")
            return config, _legacy_weights(f), version.decode() if isinstance(version, bytes) else str(version)
    except (OSError, KeyError, ValueError, RuntimeError, SystemError, EOFError, zipfile.BadZipFile) as e:
        # h5py reports damage in HDF5's own structures as RuntimeError, or SystemError from a callback
        raise UserError(f"{path} is not a readable Keras model ({type(e).__name__}: {e}); save it again with "
                        "model.save('model.keras')") from None


def _hdf5(data: bytes, path: Path, limit: int):
    """Return the HDF5 file in `data`, opened from memory, after refusing anything that reaches outside it.

    HDF5 can keep a dataset's bytes in another file (external storage), map it from other files
    (virtual datasets) and link to other files or paths (external and soft links); h5py follows
    them all, so a hostile file could read /etc/passwd into the weights. Every link and dataset is
    checked before any dataset is read.
    """
    import h5py  # here, not at the top: every command opens runs, few read Keras files

    f = h5py.File(io.BytesIO(data), "r")
    problem = f.visititems_links(lambda name, link: _outside(f, name, link, limit))  # the first answer ends the walk
    if problem:
        f.close()
        raise UserError(f"{path}: {problem}; refused")
    return f


def _outside(f, name: str, link, limit: int) -> str | None:
    """Return what at this link reaches outside the file or past any model's size, or None where nothing does."""
    import h5py

    if not isinstance(link, h5py.HardLink):
        target = f"{link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) else link.path
        return f"'{name}' is an HDF5 {type(link).__name__} to {target}, and convlens reads only what is inside the file"
    try:
        item = f[name]
    except Exception as e:  # h5py raises many types for a damaged object header
        return f"'{name}' is damaged ({type(e).__name__})"
    if not isinstance(item, h5py.Dataset):
        return None
    if item.external:
        return f"dataset '{name}' keeps its values in {item.external[0][0]!s} (HDF5 external storage), outside the file"
    if item.is_virtual:
        return f"dataset '{name}' maps its values from other files (HDF5 virtual dataset), outside the file"
    if item.size * item.dtype.itemsize > limit:
        return (f"dataset '{name}' declares shape {item.shape} ({item.size * item.dtype.itemsize:,} bytes), "
                "far more than a file of this size holds")
    return None


def _layers(config: dict) -> list[dict]:
    if config.get("class_name") not in ("Sequential", "Functional", "Model"):
        raise UserError(f"the file holds a {config.get('class_name')}, not a Sequential or functional model")
    return config["config"]["layers"]


def _snake(name: str) -> str:
    """Keras's own to_snake_case, which names each layer's weights in a .keras file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_weights(config: dict, f) -> dict[str, list[np.ndarray]]:
    used: dict[str, int] = {}
    weights = {}
    sequential = config["class_name"] == "Sequential"
    for layer in _layers(config):
        if sequential and layer["class_name"] == "InputLayer":
            continue  # a Sequential model's layers do not include its input
        base = _snake(layer["class_name"])
        key = base if base not in used else f"{base}_{used[base]}"
        used[base] = used.get(base, 0) + 1
        group = f.get(f"layers/{key}/vars")
        if group is not None:
            weights[layer["config"]["name"]] = [np.asarray(group[str(i)]) for i in range(len(group))]
    return weights


def _legacy_weights(f) -> dict[str, list[np.ndarray]]:
    root = f["model_weights"] if "model_weights" in f else f
    weights = {}
    for name, group in root.items():
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        weights[name] = [np.asarray(group[n]) for n in names]
    return weights


def _inbound(layer: dict, previous: str | None) -> list[str]:
    """Return the names of the layers feeding this one (Sequential: the previous layer)."""
    nodes = layer.get("inbound_nodes")
    if not nodes:
        return [previous] if previous else []
    first = nodes[0]
    if isinstance(first, dict):  # Keras 3: {"args": [a tensor, or a list of tensors for Add], "kwargs": {}}
        args = first["args"][0] if isinstance(first["args"][0], list) else first["args"]
        return [a["config"]["keras_history"][0] for a in args]
    return [a[0] for a in first]  # Keras 2: [[layer name, node index, tensor index, kwargs], ...]


def _unsupported(layer: dict, why: str = "") -> UserError:
    name, kind = layer["config"].get("name"), layer["class_name"]
    detail = f" ({why})" if why else ""
    return UserError(f"layer '{name}' of type {kind}{detail} is not supported; convlens imports "
                     f"{', '.join(SUPPORTED)}")


def _activation(layer: dict, name: str | None, last: bool) -> str | None:
    if not isinstance(name, (str, type(None))):  # Keras saves activations by name; a dict or list is tampering
        raise _unsupported(layer, f"activation {type(name).__name__} {str(name)[:40]}, not a name")
    name = {"silu": "swish"}.get(name, name)
    if name == "softmax" and last:
        return None  # a final softmax becomes logits
    if name not in ACTIVATIONS:
        raise _unsupported(layer, f"activation {name}")
    return None if name == "linear" else name


def to_graph(config: dict, weights: dict[str, list[np.ndarray]]) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (graph, tensors named as GraphNet's state dict) for a Keras model config and its weights."""
    layers = _layers(config)
    used: set[str] = set()
    names = {layer["config"]["name"]: module_name(layer["config"]["name"], used) for layer in layers}
    nodes, tensors, input_shape, previous = [], {}, None, None
    for i, layer in enumerate(layers):
        kind, c, name = layer["class_name"], layer["config"], layer["config"]["name"]
        last = i == len(layers) - 1
        if kind not in SUPPORTED:
            raise _unsupported(layer)
        if kind == "InputLayer":
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            input_shape = _chw(shape[1:], layer)
            names[name], previous = "input", name
            continue
        if input_shape is None:  # a Sequential model saved without its InputLayer records the shape on layer 1
            shape = c.get("batch_input_shape") or layer.get("build_config", {}).get("input_shape")
            if not shape:
                raise UserError("the model does not record its input shape; build it with keras.Input((H, W, C))")
            input_shape = _chw(shape[1:], layer)
        node = {"name": names[name], "inputs": [names[n] for n in _inbound(layer, previous)]}
        node |= _node(layer, weights.get(name, []), last, tensors, names[name])
        if node["op"] == "add" and len(node["inputs"]) != 2:
            raise _unsupported(layer, f"{len(node['inputs'])} inputs")
        nodes.append(node)
        previous = name
    graph = {"format": FORMAT, "version": VERSION, "input_shape": list(input_shape), "nodes": nodes}
    graph = fuse(graph, tensors)
    _torch_flatten_order(graph, tensors)  # after fuse: the graph must run as GraphNet to learn the flatten shapes
    return graph, tensors


def _chw(shape: list, layer: dict) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (1, int(shape[0]), int(shape[1]))
    if len(shape) != 3 or None in shape:
        raise _unsupported(layer, f"input shape {shape}; convlens takes images (H, W, C)")
    return (int(shape[2]), int(shape[0]), int(shape[1]))


def _node(layer: dict, w: list[np.ndarray], last: bool, tensors: dict, name: str) -> dict:
    kind, c = layer["class_name"], layer["config"]
    if kind == "Conv2D":
        if tuple(c.get("dilation_rate", (1, 1))) != (1, 1) or c.get("groups", 1) != 1:
            raise _unsupported(layer, "dilation or groups")
        if c.get("data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "channels_first")
        kernel = w[0]  # (kh, kw, in, out) -> (out, in, kh, kw)
        tensors[f"{name}.conv.weight"] = kernel.transpose(3, 2, 0, 1)
        if c["use_bias"]:
            tensors[f"{name}.conv.bias"] = w[1]
        node = {"op": "conv", "in": int(kernel.shape[2]), "out": int(kernel.shape[3]), "kernel": list(kernel.shape[:2]),
                "stride": list(c["strides"]), "padding": c["padding"], "bias": bool(c["use_bias"])}
        return node | {"activation": _activation(layer, c["activation"], last)}
    if kind == "Dense":
        tensors[f"{name}.linear.weight"] = w[0].T  # (in, out) -> (out, in)
        if c["use_bias"]:
            tensors[f"{name}.linear.bias"] = w[1]
        return {"op": "dense", "in": int(w[0].shape[0]), "out": int(w[0].shape[1]), "bias": bool(c["use_bias"]),
                "activation": _activation(layer, c["activation"], last)}
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        if c.get("padding", "valid") != "valid":
            raise _unsupported(layer, "same padding")
        size = list(c["pool_size"])
        return {"op": "maxpool" if kind == "MaxPooling2D" else "avgpool", "kernel": size,
                "stride": list(c.get("strides") or size)}
    if kind == "BatchNormalization":
        if c.get("axis", -1) not in (-1, 3, [3], [-1]):
            raise _unsupported(layer, f"axis {c.get('axis')}")
        values = list(w)
        features = len(values[-1])
        gamma = values.pop(0) if c.get("scale", True) else np.ones(features, np.float32)
        beta = values.pop(0) if c.get("center", True) else np.zeros(features, np.float32)
        for key, value in zip(("weight", "bias", "running_mean", "running_var"), (gamma, beta, *values)):
            tensors[f"{name}.{key}"] = value
        return {"op": "batchnorm", "features": features, "eps": float(c["epsilon"]), "dims": 2}
    if kind == "Activation":
        function = _activation(layer, c["activation"], last)
        return {"op": "activation", "function": function} if function else {"op": "identity"}
    if kind == "ReLU":
        if c.get("max_value") is not None or c.get("negative_slope", 0) or c.get("threshold", 0):
            raise _unsupported(layer, "max_value, negative_slope or threshold")
        return {"op": "activation", "function": "relu"}
    if kind == "Rescaling":
        # convlens feeds pixels / 255; a model that rescales raw 0-255 pixels itself gets them scaled back.
        return {"op": "affine", "scale": _per_channel(c["scale"], 255.0), "offset": _per_channel(c["offset"], 1.0)}
    if kind == "Flatten":
        return {"op": "flatten", "keras_order": True}
    if kind == "GlobalAveragePooling2D":
        if c.get("keepdims"):
            raise _unsupported(layer, "keepdims")
        return {"op": "global_avgpool"}
    if kind == "Add":
        return {"op": "add"}
    return {"op": "identity"}  # Dropout


def _per_channel(value, factor: float):
    return [float(v) * factor for v in value] if isinstance(value, list) else float(value) * factor


def _torch_flatten_order(graph: dict, tensors: dict) -> None:
    """Permute the inputs of each dense layer fed by a Keras Flatten from (H, W, C) order to PyTorch's (C, H, W)."""
    flattens = {n["name"] for n in graph["nodes"] if n.pop("keras_order", False)}
    if not flattens:
        return
    model, shapes = GraphNet(graph).eval(), {}  # built only to learn what shape reaches each flatten
    hooks = [getattr(model, name).register_forward_hook(
        lambda m, inputs, out, name=name: shapes.__setitem__(name, tuple(inputs[0].shape[1:]))) for name in flattens]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *graph["input_shape"]))
    except RuntimeError as e:
        raise UserError(f"the model's layers do not fit together ({str(e).splitlines()[0]})") from None
    finally:
        for h in hooks:
            h.remove()
    producer = {n["name"]: n for n in graph["nodes"]}
    for node in graph["nodes"]:
        source = node["inputs"][0] if node["op"] == "dense" else None
        while source in producer and producer[source]["op"] == "identity":  # dropout between them
            source = producer[source]["inputs"][0]
        if source in flattens and len(shapes[source]) == 3:
            c, h, w = shapes[source]
            key = f"{node['name']}.linear.weight"
            weight = tensors[key]  # (out, H*W*C) in Keras's order
            tensors[key] = weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(weight.shape[0], -1)
