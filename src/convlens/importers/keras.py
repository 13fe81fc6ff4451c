"""Keras models without TensorFlow: Keras 3 `.keras` (a zip of config.json and model.weights.h5) and legacy HDF5 `.h5`.

Read with zipfile and h5py. Kernels move from HWIO to OIHW; the first Dense after a Flatten gets
its inputs re-ordered from Keras's (H, W, C) flattening to PyTorch's (C, H, W); a final softmax is
dropped so the last layer gives logits; graph.fuse makes a Conv2D or Dense with no activation of
its own one layer with the BatchNormalization and Activation that follow it, so `conv2d` is the
map after its activation, as Keras users read it.

Where Keras 3 keeps the weights: `layers/<snake_case class name>[_N]/vars/<i>` in model.layers
order (not the layers' own names), a nested model's under `layers/<its key>/layers/...`; legacy HDF5
keeps them under `model_weights/<layer name>`, listed by its `weight_names` attribute, a nested
model's as `<inner layer>/<weight>` inside its group. Nested models (a Sequential stem in ConvNeXt, a
MobileNet base under a new head) are opened into one flat list of layers.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .graph import FORMAT, VERSION, activation_spec, channels_last_flatten, fuse, module_name
from .limits import unpacked_limit

SUPPORTED = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense",
             "BatchNormalization", "LayerNormalization", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
             "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Flatten", "Reshape", "Dropout",
             "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
             "Identity", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
             "Rescaling", "Normalization", "LayerScale", "Add", "Subtract", "Multiply", "Concatenate",
             "Sequential and functional models nested as layers")
MODELS = ("Sequential", "Functional", "Model")  # a model used as a layer: opened into its layers
# Keras activation names -> graph.py's specs; a final softmax is dropped, so the model gives logits.
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "selu": "selu", "elu": "elu", "linear": "linear",
               "gelu": "gelu", "softplus": "softplus", "swish": "swish", "silu": "swish", "mish": "mish",
               "relu6": activation_spec("clip", 0, 6), "hard_sigmoid": activation_spec("hardsigmoid", 1 / 6, 0.5),
               "hard_silu": "hardswish", "hard_swish": "hardswish", "leaky_relu": activation_spec("leaky_relu", 0.2)}
FINAL = ("softmax", "log_softmax")
EPSILON = 1e-7  # keras.backend.epsilon(): Normalization divides by at least this

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
                    return config, _keras3_weights(config, f, "layers", ()), meta.get("keras_version", "3")
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


Weights = dict[tuple[str, ...], list[np.ndarray]]  # a layer's path of names (a nested model's first) -> its arrays


def _keras3_weights(config: dict, f, prefix: str, path: tuple[str, ...]) -> Weights:
    used: dict[str, int] = {}
    weights = {}
    sequential = config["class_name"] == "Sequential"
    for layer in _layers(config):
        if sequential and layer["class_name"] == "InputLayer":
            continue  # a Sequential model's layers do not include its input
        base = _snake(layer["class_name"])
        key = base if base not in used else f"{base}_{used[base]}"
        used[base] = used.get(base, 0) + 1
        here = path + (layer["config"]["name"],)
        if layer["class_name"] in MODELS:
            weights |= _keras3_weights(layer, f, f"{prefix}/{key}/layers", here)
        elif (group := f.get(f"{prefix}/{key}/vars")) is not None:
            weights[here] = [np.asarray(group[str(i)]) for i in range(len(group))]
    return weights


def _legacy_weights(f) -> Weights:
    """A layer's weights by its name; a nested model's group names each weight `<inner layer>/<weight>`, so an
    inner layer's are also kept under (model, inner layer)."""
    root = f["model_weights"] if "model_weights" in f else f
    weights: Weights = {}
    for name, group in root.items():
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        weights[(name,)] = [np.asarray(group[n]) for n in names]
        for n, value in zip(names, weights[(name,)]):
            if (inner := n.split("/")[0]) != name:
                weights.setdefault((name, inner), []).append(value)
    return weights


@dataclass
class _Flat:
    """One layer of a model whose nested models are opened: what it reads, by the ids of the layers making them."""

    id: str  # the layer's name, or its path where a nested model reuses a name
    layer: dict
    inputs: list[str]
    numbers: list[float]  # numbers it is applied to (x + 3.0)
    weights: list[np.ndarray]


def _flatten(config: dict, weights: Weights, path: tuple[str, ...] = (), outer: list[str] | None = None,
             taken: set[str] | None = None) -> tuple[list[_Flat], str | None]:
    """Return a model's layers with nested models opened into their own, and the id of its output.

    `outer` are the ids a nested model reads; its InputLayer stands for them.
    """
    taken = set() if taken is None else taken
    alias: dict[str, str] = {}  # a layer's name in this model -> the id of the value it stands for
    flat: list[_Flat] = []
    previous = outer[0] if outer else None
    for layer in _layers(config):
        name = layer["config"]["name"]
        if layer["class_name"] == "InputLayer" and outer is not None:
            alias[name] = previous = outer[0]
            continue
        sources, numbers = _inbound(layer, previous)
        inputs = [alias.get(n, n) for n in sources]
        if layer["class_name"] in MODELS:
            inner, output = _flatten(layer, weights, path + (name,), inputs, taken)
            flat += inner
            alias[name] = previous = output
            continue
        unique = name if name not in taken else "/".join(path + (name,))
        taken.add(unique)
        flat.append(_Flat(unique, layer, inputs, numbers, weights.get(path + (name,), [])))
        alias[name] = previous = unique
    outputs = config["config"].get("output_layers")
    if config["class_name"] != "Sequential" and outputs:
        first = outputs[0] if isinstance(outputs[0], list) else outputs  # [[name, 0, 0]] or [name, 0, 0]
        return flat, alias.get(first[0], first[0])
    return flat, previous


def _inbound(layer: dict, previous: str | None) -> tuple[list[str], list[float]]:
    """Return the names of the layers feeding this one (Sequential: the previous layer), and any numbers it
    is applied to (Keras 3 records `x + 3.0` in MobileNetV3's hard sigmoid as an Add of a tensor and 3.0)."""
    nodes = layer.get("inbound_nodes")
    if not nodes:
        return ([previous] if previous else []), []
    first = nodes[0]
    if isinstance(first, dict):  # Keras 3: {"args": [a tensor, or a list of tensors for Add], "kwargs": {}}
        args = first["args"][0] if isinstance(first["args"][0], list) else first["args"]
        tensors = [a["config"]["keras_history"][0] for a in args if isinstance(a, dict)]
        return tensors, [float(a) for a in args if isinstance(a, (int, float))]
    return [a[0] for a in first], []  # Keras 2: [[layer name, node index, tensor index, kwargs], ...]


def _unsupported(layer: dict, why: str = "") -> UserError:
    name, kind = layer["config"].get("name"), layer["class_name"]
    detail = f" ({why})" if why else ""
    return UserError(f"layer '{name}' of type {kind}{detail} is not supported; convlens imports "
                     f"{', '.join(SUPPORTED)}")


def _activation(layer: dict, name: str | None, last: bool) -> str | None:
    if not isinstance(name, (str, type(None))):  # Keras saves activations by name; a dict or list is tampering
        raise _unsupported(layer, f"activation {type(name).__name__} {str(name)[:40]}, not a name")
    if name in FINAL and last:
        return None  # a final softmax becomes logits
    if name not in ACTIVATIONS:
        raise _unsupported(layer, f"activation {name}")
    return None if name == "linear" else ACTIVATIONS[name]


def to_graph(config: dict, weights: Weights) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (graph, tensors named as GraphNet's state dict) for a Keras model config and its weights."""
    _layers(config)
    flat, _ = _flatten(config, weights)
    used: set[str] = set()
    names = {entry.id: module_name(entry.layer["config"]["name"], used) for entry in flat}
    ranks = {"input": 4}  # each value's rank: 4 for maps, 2 for vectors, so a Dense on maps becomes a 1x1 conv
    nodes, tensors, input_shape = [], {}, None
    for i, entry in enumerate(flat):
        layer, kind, c = entry.layer, entry.layer["class_name"], entry.layer["config"]
        if kind not in SUPPORTED:
            raise _unsupported(layer)
        if kind == "InputLayer":
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            input_shape = _chw(shape[1:], layer)
            names[entry.id] = "input"
            continue
        if input_shape is None:  # a Sequential model saved without its InputLayer records the shape on layer 1
            shape = c.get("batch_input_shape") or layer.get("build_config", {}).get("input_shape")
            if not shape:
                raise UserError("the model does not record its input shape; build it with keras.Input((H, W, C))")
            input_shape = _chw(shape[1:], layer)
        inputs = [names[n] for n in entry.inputs] or ["input"]
        rank = ranks[inputs[0]]
        for part in _nodes(layer, entry.weights, i == len(flat) - 1, tensors, names[entry.id], used, entry.numbers,
                           inputs == ["input"], rank):
            nodes.append({"name": part.pop("name", names[entry.id]), "inputs": inputs} | part)
            inputs = [nodes[-1]["name"]]
            rank = ranks[inputs[0]] = _rank(nodes[-1], rank)
        if nodes[-1]["op"] in ("add", "mul") and len(nodes[-1]["inputs"]) != 2:
            raise _unsupported(layer, f"{len(nodes[-1]['inputs'])} inputs")
    graph = {"format": FORMAT, "version": VERSION, "input_shape": list(input_shape), "nodes": nodes}
    graph = fuse(graph, tensors)
    channels_last_flatten(graph, tensors)  # after fuse: the graph must run as GraphNet to learn the flatten shapes
    return graph, tensors


def _rank(node: dict, rank: int) -> int:
    """The rank of a node's output, given its input's."""
    if node["op"] in ("flatten", "dense") or (node["op"].startswith("global_") and not node.get("keepdims")):
        return 2
    return len(node["shape"]) + 1 if node["op"] == "reshape" else 4 if node["op"].startswith("global_") else rank


def _chw(shape: list, layer: dict) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (1, int(shape[0]), int(shape[1]))
    if len(shape) != 3 or None in shape:
        raise _unsupported(layer, f"input shape {shape}; convlens takes images (H, W, C)")
    return (int(shape[2]), int(shape[0]), int(shape[1]))


def _nodes(layer: dict, w: list[np.ndarray], last: bool, tensors: dict, name: str, used: set[str],
           numbers: list[float], reads_input: bool, rank: int) -> list[dict]:
    """Return the graph nodes of one Keras layer, in order: one, or two for a separable convolution
    (depthwise, then pointwise under the layer's own name)."""
    kind, c = layer["class_name"], layer["config"]
    if c.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "channels_first")
    if kind == "SeparableConv2D":
        depthwise = module_name(f"{name}_depthwise", used)
        return [{"name": depthwise, **_depthwise(layer, w[0], None, tensors, depthwise)},
                _conv(layer, w[1], w[2] if c["use_bias"] else None, tensors, name, pointwise=True)
                | {"activation": _activation(layer, c["activation"], last)}]
    if kind == "DepthwiseConv2D":
        return [_depthwise(layer, w[0], w[1] if c["use_bias"] else None, tensors, name)
                | {"activation": _activation(layer, c["activation"], last)}]
    if kind == "Conv2D":
        return [_conv(layer, w[0], w[1] if c["use_bias"] else None, tensors, name)
                | {"activation": _activation(layer, c["activation"], last)}]
    if kind == "Conv2DTranspose":
        return [_conv_transpose(layer, w[0], w[1] if c["use_bias"] else None, tensors, name)
                | {"activation": _activation(layer, c["activation"], last)}]
    if kind == "Dense" and rank == 4:  # applied to each position's channels (ConvNeXt's pointwise convs): a 1x1 conv
        return [_conv(layer, w[0][None, None], w[1] if c["use_bias"] else None, tensors, name, pointwise=True)
                | {"activation": _activation(layer, c["activation"], last)}]
    return [_node(layer, w, last, tensors, name, numbers, reads_input)]


def _conv(layer: dict, kernel: np.ndarray, bias, tensors: dict, name: str, pointwise: bool = False) -> dict:
    """A Conv2D (or a separable conv's pointwise half): kernels go from (kh, kw, in / groups, out) to OIHW."""
    c = layer["config"]
    tensors[f"{name}.conv.weight"] = kernel.transpose(3, 2, 0, 1)
    if bias is not None:
        tensors[f"{name}.conv.bias"] = bias
    groups = 1 if pointwise else int(c.get("groups", 1))
    return {"op": "conv", "in": int(kernel.shape[2]) * groups, "out": int(kernel.shape[3]),
            "kernel": list(kernel.shape[:2]), "stride": [1, 1] if pointwise else list(c["strides"]),
            "padding": "valid" if pointwise else c["padding"], "groups": groups,
            "dilation": [1, 1] if pointwise else list(c.get("dilation_rate", (1, 1))), "bias": bias is not None}


def _depthwise(layer: dict, kernel: np.ndarray, bias, tensors: dict, name: str) -> dict:
    """A depthwise conv: (kh, kw, in, multiplier) becomes in * multiplier kernels of one channel, in
    groups of one input each; output channel i * multiplier + m is Keras's order too."""
    c = layer["config"]
    kh, kw, channels, multiplier = kernel.shape
    tensors[f"{name}.conv.weight"] = kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]
    if bias is not None:
        tensors[f"{name}.conv.bias"] = bias
    return {"op": "conv", "in": int(channels), "out": int(channels * multiplier), "kernel": [int(kh), int(kw)],
            "stride": list(c["strides"]), "padding": c["padding"], "groups": int(channels),
            "dilation": list(c.get("dilation_rate", (1, 1))), "bias": bias is not None}


def _conv_transpose(layer: dict, kernel: np.ndarray, bias, tensors: dict, name: str) -> dict:
    """A Conv2DTranspose: kernels go from (kh, kw, out, in) to PyTorch's (in, out, kh, kw); Keras's padding and
    output_padding become pads of the full output (JAX's convention in Keras's backend_utils, made relative)."""
    c = layer["config"]
    if int(c.get("groups", 1)) != 1:
        raise _unsupported(layer, "groups")
    tensors[f"{name}.conv.weight"] = kernel.transpose(3, 2, 0, 1)
    if bias is not None:
        tensors[f"{name}.conv.bias"] = bias
    pads = []
    extra = c.get("output_padding") or [None, None]
    for k, s, d, more in zip(kernel.shape[:2], c["strides"], c.get("dilation_rate", (1, 1)), extra):
        k = (k - 1) * d + 1
        if c["padding"] == "valid":
            before, after = k - 1, k - 1 + (max(k, s) - k if more is None else more)
        else:
            total = s + k - 2 if more is None else k + k % 2 - 2 + more
            before = min(total // 2 + total % 2, k - 1)
            after = total - before
        pads += [before - (k - 1), after - (k - 1)]
    return {"op": "convtranspose", "in": int(kernel.shape[3]), "out": int(kernel.shape[2]),
            "kernel": list(kernel.shape[:2]), "stride": list(c["strides"]), "pads": pads, "groups": 1,
            "dilation": list(c.get("dilation_rate", (1, 1))), "bias": bias is not None}


def _node(layer: dict, w: list[np.ndarray], last: bool, tensors: dict, name: str, numbers: list[float],
          reads_input: bool) -> dict:
    kind, c = layer["class_name"], layer["config"]
    if kind == "Dense":
        tensors[f"{name}.linear.weight"] = w[0].T  # (in, out) -> (out, in)
        if c["use_bias"]:
            tensors[f"{name}.linear.bias"] = w[1]
        return {"op": "dense", "in": int(w[0].shape[0]), "out": int(w[0].shape[1]), "bias": bool(c["use_bias"]),
                "activation": _activation(layer, c["activation"], last)}
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        size = list(c["pool_size"])
        return {"op": "maxpool" if kind == "MaxPooling2D" else "avgpool", "kernel": size,
                "stride": list(c.get("strides") or size), "padding": "same" if c.get("padding") == "same" else [0, 0]}
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
    if kind == "LayerNormalization":
        if c.get("axis", -1) not in (-1, [-1]) or c.get("rms_scaling"):
            raise _unsupported(layer, f"axis {c.get('axis')} or rms_scaling; convlens normalises over the channels")
        values = list(w)
        features = len(values[0])
        gamma = values.pop(0) if c.get("scale", True) else np.ones(features, np.float32)
        beta = values.pop(0) if c.get("center", True) else np.zeros(features, np.float32)
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = gamma, beta
        return {"op": "layernorm", "features": features, "eps": float(c["epsilon"])}
    if kind == "LayerScale":  # keras.applications' ConvNeXt: x * gamma, a number per channel
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = w[0], np.zeros_like(w[0])
        return {"op": "scale", "features": len(w[0])}
    if kind == "PReLU":
        alpha = np.asarray(w[0])
        if alpha.size != alpha.shape[-1]:
            raise _unsupported(layer, f"a slope per position {alpha.shape}; give shared_axes=[1, 2]")
        tensors[f"{name}.weight"] = alpha.reshape(-1)
        return {"op": "prelu", "features": int(alpha.size)}
    if kind == "UpSampling2D":
        if c.get("interpolation", "nearest") not in ("nearest", "bilinear"):
            raise _unsupported(layer, f"interpolation {c.get('interpolation')}")
        return {"op": "upsample", "factor": [int(v) for v in c["size"]], "mode": c.get("interpolation", "nearest")}
    if kind == "Softmax" and last:
        return {"op": "identity"}
    if kind == "Activation":
        function = _activation(layer, c["activation"], last)
        return {"op": "activation", "function": function} if function else {"op": "identity"}
    if kind == "ELU":
        return {"op": "activation", "function": activation_spec("elu", c.get("alpha", 1.0))}
    if kind in ("ReLU", "LeakyReLU"):
        return {"op": "activation", "function": _relu(layer)}
    if kind == "Rescaling":
        # convlens feeds pixels / 255; a model that rescales raw 0-255 pixels itself gets them scaled back.
        factor = 255.0 if reads_input else 1.0
        return {"op": "affine", "scale": _per_channel(c["scale"], factor), "offset": _per_channel(c["offset"], 1.0)}
    if kind == "Normalization":  # Keras: (x - mean) / max(sqrt(variance), epsilon), per channel
        if c.get("invert") or c.get("axis") not in (-1, 3, [3], [-1]):
            raise _unsupported(layer, "invert, or an axis other than the channels")
        given = w[:2] if w else (c["mean"], c["variance"])  # adapted, or given to the constructor (ConvNeXt)
        mean, variance = (np.ravel(v).astype(np.float64) for v in given)
        scale = 1.0 / np.maximum(np.sqrt(variance), EPSILON)
        factor = 255.0 if reads_input else 1.0
        return {"op": "affine", "scale": [float(v) * factor for v in scale], "offset": [float(v) for v in -mean * scale]}
    if kind in ("ZeroPadding2D", "Cropping2D"):
        (top, bottom), (left, right) = c["padding"] if kind == "ZeroPadding2D" else c["cropping"]
        sign = 1 if kind == "ZeroPadding2D" else -1
        return {"op": "pad", "pads": [sign * int(v) for v in (top, bottom, left, right)]}
    if kind == "Flatten":
        return {"op": "flatten", "keras_order": True}
    if kind == "Reshape":
        return _reshape(layer)
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return {"op": "global_avgpool" if kind == "GlobalAveragePooling2D" else "global_maxpool",
                "keepdims": bool(c.get("keepdims", False))}
    if kind in ("Add", "Multiply"):
        if numbers:  # a tensor and a number: x + 3.0 or x * (1 / 6)
            total = float(np.sum(numbers)) if kind == "Add" else float(np.prod(numbers))
            return {"op": "affine", "scale": 1.0, "offset": total} if kind == "Add" else \
                {"op": "affine", "scale": total, "offset": 0.0}
        return {"op": "add" if kind == "Add" else "mul"}
    if kind == "Subtract" and len(numbers) == 1:
        return {"op": "affine", "scale": 1.0, "offset": -numbers[0]}
    if kind == "Concatenate":
        if c.get("axis", -1) not in (-1, 3):
            raise _unsupported(layer, f"axis {c.get('axis')}; convlens joins along the channels")
        return {"op": "concat"}
    if kind == "Softmax" or kind == "Subtract":
        raise _unsupported(layer, "a softmax before the last layer" if kind == "Softmax" else "of two values")
    return {"op": "identity"}  # Dropout, noise and regularisation (training only), Identity


def _relu(layer: dict) -> str:
    """Keras's ReLU(max_value, negative_slope, threshold) and LeakyReLU as graph.py's activation specs."""
    c = layer["config"]
    if layer["class_name"] == "LeakyReLU":
        return activation_spec("leaky_relu", c.get("negative_slope", c.get("alpha", 0.3)))
    top, slope, threshold = c.get("max_value"), c.get("negative_slope") or 0.0, c.get("threshold") or 0.0
    if threshold:
        raise _unsupported(layer, f"threshold {threshold}")
    if slope and top is not None:
        raise _unsupported(layer, "both negative_slope and max_value")
    if slope:
        return activation_spec("leaky_relu", slope)
    return "relu" if top is None else activation_spec("clip", 0.0, top)


def _reshape(layer: dict) -> dict:
    """Reshapes whose meaning does not depend on the channels' place: to a vector, or a vector to (1, 1, C)."""
    target = [int(v) for v in layer["config"]["target_shape"]]
    if len(target) == 1:
        return {"op": "flatten", "keras_order": True}
    if len(target) == 3 and target[:2] == [1, 1]:
        return {"op": "reshape", "shape": [target[2], 1, 1]}
    raise _unsupported(layer, f"target shape {target}: only to (features,) or (1, 1, channels)")


def _per_channel(value, factor: float):
    return [float(v) * factor for v in value] if isinstance(value, list) else float(value) * factor
