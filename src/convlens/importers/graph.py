"""A model convlens did not train, kept as data: a small layer graph (JSON) plus its weights (safetensors).

Every importer (Keras, ONNX, PyTorch) writes this one form, and `GraphNet` runs it with real torch
modules, so forward hooks, the layer table and every feature work on it as on convlens's own nets,
and a run reopens in a new process without the user's code and without unpickling anything.

A node is {"name", "op", "inputs", ...attributes}. Ops:
    conv       in, out, kernel [kh, kw], stride [sh, sw], padding "valid" | "same" | [ph, pw], bias,
               groups (1; `in` for depthwise), dilation [dh, dw] ([1, 1]),
               bn (eps, or absent), activation (or absent): one Block, like convlens's own conv layers
    dense      in, out, bias, bn, activation: one Block (a Linear and its activation)
    maxpool, avgpool   kernel, stride, padding [ph, pw] ([0, 0]) or "same" (TensorFlow's), ceil_mode (false),
               count_include_pad (avgpool only; true)
    pad        pads [top, bottom, left, right] of zeros; negative crops (Keras's Cropping2D)
    global_avgpool, global_maxpool   keepdims (false): (N, C), or (N, C, 1, 1)
    reshape    shape: each image's values in that shape, torch's order (a vector to (C, 1, 1))
    flatten, identity
    activation function: a name from ACTIVATIONS, with its numbers if it takes any: "relu",
               "clip(0.0,6.0)" (ReLU6), "leaky_relu(0.2)", "hardsigmoid(0.2,0.5)"
    convtranspose   in, out, kernel, stride, groups, dilation, bias, bn, activation as conv; pads [top, bottom,
               left, right] added to the full transposed output, negative crops (PyTorch's padding p is -p)
    upsample   factor [fh, fw], mode "nearest" | "bilinear", align_corners (false)
    batchnorm  features, eps, dims (1 or 2)
    groupnorm  groups, features, eps: statistics of each image's group of channels (groups = features is
               InstanceNorm), a weight and bias per channel
    layernorm  features, eps: statistics of each position's channels (a vector's features), as Keras's
               LayerNormalization(axis=-1) and a channels-last nn.LayerNorm compute them; weight and bias
    scale      features: x * weight + bias, a number per channel (Keras's LayerScale, an unfused batch norm)
    prelu      features: PReLU with a slope per channel (1: one slope for all)
    add, mul   two inputs
    concat     two or more inputs, joined along the channels
    affine     scale, offset: x * scale + offset per element (input scaling, Keras's Rescaling)
The first node reads "input"; the graph's output is its last node. Every format's importer maps
its operators to these, so what a graph can hold is decided here once.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import UserError
from ..layers import Block

FORMAT, VERSION = "convlens-graph", 1
RESERVED = {"input", "input_shape", "preprocess"}  # names a layer may not take: the graph's input and GraphNet's own


class HardSigmoid(nn.Module):
    """max(0, min(1, alpha * x + beta)): ONNX's and old Keras's slope 0.2, PyTorch's and Keras 3's 1/6."""

    def __init__(self, alpha: float = 1 / 6, beta: float = 0.5):
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x):
        return (x * self.alpha + self.beta).clamp(0.0, 1.0)


class Erf(nn.Module):
    """The error function, as exporters spell GELU out: x * 0.5 * (1 + erf(x / sqrt(2)))."""

    def forward(self, x):
        return torch.erf(x)


class Sqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(x)


class Pow(nn.Module):
    """x to a fixed power (x ** 2 in a hand-written norm, x ** 3 in GELU's tanh form)."""

    def __init__(self, exponent: float):
        super().__init__()
        self.exponent = exponent

    def forward(self, x):
        return x.pow(self.exponent)


# An activation by name, with the numbers its spec gives ("leaky_relu(0.2)" calls the factory with 0.2).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "selu": nn.SELU, "linear": nn.Identity,
               "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU("tanh"), "softplus": nn.Softplus, "swish": nn.SiLU,
               "mish": nn.Mish, "hardswish": nn.Hardswish, "hardsigmoid": HardSigmoid, "erf": Erf, "sqrt": Sqrt,
               "pow": Pow,
               "elu": lambda alpha=1.0: nn.ELU(alpha), "leaky_relu": lambda slope=0.01: nn.LeakyReLU(slope),
               "clip": lambda low, high: nn.Hardtanh(low, high)}  # clip(0,6) is ReLU6
SPEC = re.compile(r"^([a-z][a-z0-9_]*)(?:\(([-+0-9.e,inf ]*)\))?$")


def pointwise_conv(weight, bias: bool) -> dict:
    """The node of a 1x1 conv with weight (out, in): a Dense, Linear or MatMul applied to each position's channels."""
    return {"op": "conv", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "kernel": [1, 1], "stride": [1, 1],
            "padding": "valid", "dilation": [1, 1], "groups": 1, "bias": bias}


def per_channel(constant, channels_last: bool) -> np.ndarray | None:
    """Return the numbers (float32, flat) of a constant that broadcasts one number per channel of a value, or one
    for all; None for any other shape. Channels last (NHWC maps, or a vector) take a (C,) constant, NCHW maps a
    (C, 1, 1) one; leading ones, as in (1, C, 1, 1), do not count. ONNX and torch.export constants both come here."""
    if constant is None:
        return None
    shape = [int(d) for d in np.shape(constant)]
    while len(shape) > 1 and shape[0] == 1:
        shape.pop(0)
    fits = np.size(constant) == 1 or (len(shape) == 1 if channels_last else len(shape) == 3 and shape[1:] == [1, 1])
    return np.ravel(constant).astype(np.float32) if fits else None


def activation_spec(name: str, *numbers: float) -> str:
    """Return the spec graph.json keeps for an activation: its name, and its numbers exactly (repr round-trips)."""
    return f"{name}({','.join(repr(float(n)) for n in numbers)})" if numbers else name


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's 'same' padding: for stride > 1 it pads more at the bottom and right.

    `pad_before` keeps the top and left padding of the last input, so receptive fields come out right.
    """

    pad_before = (0, 0)

    def forward(self, x):
        return F.conv2d(F.pad(x, _same_pads(self, x)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class Affine(nn.Module):
    """x * scale + offset: how a model wants its pixels scaled (Keras's Rescaling, or a mean/std given at import)."""

    def __init__(self, scale: float | list[float], offset: float | list[float]):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).reshape(-1, 1, 1))
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32).reshape(-1, 1, 1))

    def forward(self, x):
        if x.dim() == 4:
            return x * self.scale + self.offset
        return x * self.scale.flatten() + self.offset.flatten()  # a vector's features: the (C, 1, 1) shape would add dims


class ChannelNorm(nn.Module):
    """Layer normalisation over the channels of each position (dim 1), with a weight and bias per channel."""

    def __init__(self, features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(features)), nn.Parameter(torch.zeros(features))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).square().mean(1, keepdim=True)
        shape = (-1,) + (1,) * (x.dim() - 2)  # (C, 1, 1) for maps, (C,) for vectors
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight.reshape(shape) + self.bias.reshape(shape)


class ChannelScale(nn.Module):
    """x * weight + bias with a weight and bias per channel: a LayerScale, or a batch norm exported as Mul and Add."""

    def __init__(self, features: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(features)), nn.Parameter(torch.zeros(features))

    def forward(self, x):
        shape = (-1,) + (1,) * (x.dim() - 2)
        return x * self.weight.reshape(shape) + self.bias.reshape(shape)


class PaddedConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution whose full output is then padded, or cropped where `pads` are negative.

    Framework conventions differ (PyTorch's padding and output_padding, TensorFlow's 'same', ONNX's
    asymmetric pads), but each is a crop or pad of the same full output; the bias is added after, so
    padded rows hold the bias, as output_padding's rows do in PyTorch.
    """

    def __init__(self, *args, pads: tuple[int, int, int, int] = (0, 0, 0, 0), **kwargs):
        super().__init__(*args, **kwargs)
        self.pads = tuple(pads)

    def forward(self, x):
        y = F.conv_transpose2d(x, self.weight, None, self.stride, 0, 0, self.groups, self.dilation)
        top, bottom, left, right = self.pads
        y = F.pad(y, (left, right, top, bottom))
        return y if self.bias is None else y + self.bias.reshape(-1, 1, 1)


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class Mul(nn.Module):
    def forward(self, a, b):
        return a * b


class Concat(nn.Module):
    def forward(self, *values):
        return torch.cat(values, 1)


class GlobalAvgPool(nn.Module):
    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):
        return x.mean((-2, -1), keepdim=self.keepdims)


class GlobalMaxPool(GlobalAvgPool):
    def forward(self, x):
        return x.amax((-2, -1), keepdim=self.keepdims)


class Reshape(nn.Module):
    """Each image's values as `shape` (torch's order): a squeeze-and-excitation vector becomes (C, 1, 1)."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _same_pads(module, x) -> list[int]:
    """TensorFlow's 'same' padding for a window module and input: (left, right, top, bottom), more after than
    before when uneven; the top and left are kept in `pad_before`, so receptive fields come out right."""
    pads = []
    for size, k, s, d in zip(x.shape[-2:], *map(_pair, (module.kernel_size, module.stride, module.dilation))):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    module.pad_before = (pads[0][0], pads[1][0])
    return [*pads[1], *pads[0]]


class SameMaxPool2d(nn.MaxPool2d):
    """Max pooling with TensorFlow's 'same' padding: the padding never wins the max."""

    pad_before = (0, 0)

    def forward(self, x):
        return F.max_pool2d(F.pad(x, _same_pads(self, x), value=-math.inf), self.kernel_size, self.stride)


class SameAvgPool2d(nn.AvgPool2d):
    """Average pooling with TensorFlow's 'same' padding: each window averages only the pixels it covers."""

    pad_before = (0, 0)
    dilation = 1

    def forward(self, x):
        pads = _same_pads(self, x)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel_size, self.stride)
        covered = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pads), self.kernel_size, self.stride)
        return total / covered


def _activation(spec: str | None) -> nn.Module:
    """Return the module of an activation spec (see ACTIVATIONS); a spec no factory takes is a UserError."""
    match = SPEC.match(spec or "linear")
    if not match or match[1] not in ACTIVATIONS:
        raise UserError(f"activation '{spec}' is not supported; supported: {', '.join(ACTIVATIONS)}")
    try:
        numbers = [float(n) for n in match[2].split(",")] if match[2] else []
        return ACTIVATIONS[match[1]](*numbers)
    except (TypeError, ValueError):
        raise UserError(f"activation '{spec}' does not give {match[1]} the numbers it takes") from None


def _act(node: dict) -> list[tuple[str, nn.Module]]:
    """The activation part of a layer, if it has one: a layer without one (the logits) runs one module less."""
    return [("act", _activation(node["activation"]))] if node.get("activation") else []


def _module(node: dict) -> nn.Module:
    op = node["op"]
    if op == "conv":
        padding = node["padding"]
        kind = SameConv2d if padding == "same" else nn.Conv2d
        conv = kind(node["in"], node["out"], tuple(node["kernel"]), tuple(node["stride"]),
                    0 if padding in ("same", "valid") else tuple(padding), tuple(node.get("dilation", (1, 1))),
                    node.get("groups", 1), bias=node["bias"])
        parts = [("conv", conv)] + ([("bn", nn.BatchNorm2d(node["out"], eps=node["bn"]))] if "bn" in node else [])
        return Block(OrderedDict(parts + _act(node)))
    if op == "convtranspose":
        conv = PaddedConvTranspose2d(node["in"], node["out"], tuple(node["kernel"]), tuple(node["stride"]),
                                     groups=node.get("groups", 1), dilation=tuple(node.get("dilation", (1, 1))),
                                     bias=node["bias"], pads=tuple(node["pads"]))
        parts = [("conv", conv)] + ([("bn", nn.BatchNorm2d(node["out"], eps=node["bn"]))] if "bn" in node else [])
        return Block(OrderedDict(parts + _act(node)))
    if op == "dense":
        parts = [("linear", nn.Linear(node["in"], node["out"], bias=node["bias"]))]
        parts += [("bn", nn.BatchNorm1d(node["out"], eps=node["bn"]))] if "bn" in node else []
        return Block(OrderedDict(parts + _act(node)))
    if op in ("maxpool", "avgpool") and node.get("padding") == "same":
        kind = SameMaxPool2d if op == "maxpool" else SameAvgPool2d
        pool = kind(tuple(node["kernel"]), tuple(node["stride"]))
        pool.padding = "same"  # for the layer table, which reads pad_before after a forward pass
        return pool
    if op == "maxpool":
        return nn.MaxPool2d(tuple(node["kernel"]), tuple(node["stride"]), tuple(node.get("padding", (0, 0))),
                            ceil_mode=node.get("ceil_mode", False))
    if op == "avgpool":
        return nn.AvgPool2d(tuple(node["kernel"]), tuple(node["stride"]), tuple(node.get("padding", (0, 0))),
                            ceil_mode=node.get("ceil_mode", False),
                            count_include_pad=node.get("count_include_pad", True))
    if op == "pad":
        top, bottom, left, right = node["pads"]
        return nn.ZeroPad2d((left, right, top, bottom))
    if op == "batchnorm":
        return (nn.BatchNorm2d if node["dims"] == 2 else nn.BatchNorm1d)(node["features"], eps=node["eps"])
    if op == "groupnorm":
        return nn.GroupNorm(node["groups"], node["features"], eps=node["eps"])
    if op == "layernorm":
        return ChannelNorm(node["features"], node["eps"])
    if op == "scale":
        return ChannelScale(node["features"])
    if op == "prelu":
        return nn.PReLU(node["features"])
    if op == "upsample":
        return nn.Upsample(scale_factor=tuple(float(f) for f in node["factor"]), mode=node["mode"],
                           align_corners=node.get("align_corners", False) if node["mode"] == "bilinear" else None)
    if op in ("global_avgpool", "global_maxpool"):
        return (GlobalAvgPool if op == "global_avgpool" else GlobalMaxPool)(node.get("keepdims", False))
    if op == "reshape":
        return Reshape(node["shape"])
    simple = {"flatten": nn.Flatten, "identity": nn.Identity, "add": Add, "mul": Mul, "concat": Concat}
    if op in simple:
        return simple[op]()
    if op == "activation":
        return _activation(node["function"])
    if op == "affine":
        return Affine(node["scale"], node["offset"])
    raise UserError(f"the graph holds an unknown op '{op}'; it was written by a newer convlens or edited by hand")


REQUIRED = {"conv": ("in", "out", "kernel", "stride", "padding", "bias"), "dense": ("in", "out", "bias"),
            "convtranspose": ("in", "out", "kernel", "stride", "pads", "bias"), "upsample": ("factor", "mode"),
            "layernorm": ("features", "eps"), "scale": ("features",), "prelu": ("features",),
            "maxpool": ("kernel", "stride"), "avgpool": ("kernel", "stride"), "batchnorm": ("features", "eps", "dims"),
            "groupnorm": ("groups", "features", "eps"),
            "activation": ("function",), "affine": ("scale", "offset"), "pad": ("pads",), "reshape": ("shape",)}
INPUTS = {"add": (2, 2), "mul": (2, 2), "concat": (2, 4096)}  # (fewest, most); every other op reads one value


def checked_graph(graph, shapes: dict[str, tuple[int, ...]], source) -> dict:
    """Return graph.json's graph after checking its schema, its wiring and every parameter against `shapes`.

    `shapes` are the weights file's tensor shapes (read from its header), so a tampered graph is
    refused before a module is allocated: a layer claiming 10^8 channels must have the weights for them.
    """
    from .. import schemas
    from ..storage import checked

    checked(graph, schemas.Graph, source)
    made = {"input"}
    for node in graph["nodes"]:
        name, op = node["name"], node["op"]
        if name in made or (name in RESERVED and not (name == "preprocess" and op == "affine")) or hasattr(nn.Module, name):
            raise UserError(f"{source}: layer name '{name}' is taken (by an earlier layer, the input or torch itself)")
        if unknown := [i for i in node["inputs"] if i not in made]:
            raise UserError(f"{source}: layer '{name}' reads '{unknown[0]}', which no earlier layer makes "
                            "(a loop, or a missing layer)")
        fewest, most = INPUTS.get(op, (1, 1))
        if not fewest <= len(node["inputs"]) <= most:
            raise UserError(f"{source}: layer '{name}' ({op}) reads {len(node['inputs'])} values, not "
                            f"{fewest if fewest == most else f'{fewest} or more'}")
        if missing := [key for key in REQUIRED.get(op, ()) if node.get(key) is None]:
            raise UserError(f"{source}: layer '{name}' ({op}) has no '{missing[0]}'")
        if op in ("conv", "convtranspose") and (node["in"] % node.get("groups", 1) or node["out"] % node.get("groups", 1)):
            raise UserError(f"{source}: layer '{name}' splits {node['in']} inputs and {node['out']} outputs into "
                            f"{node.get('groups', 1)} groups")
        if op == "groupnorm" and node["features"] % node["groups"]:
            raise UserError(f"{source}: layer '{name}' splits {node['features']} channels into {node['groups']} groups")
        try:  # an unknown activation, or numbers its function does not take, is one line here
            [_activation(spec) for spec in (node.get("function"), node.get("activation")) if spec is not None]
        except UserError as e:
            raise UserError(f"{source}: layer '{name}': {e}") from None
        for key, shape in _parameter_shapes(node).items():
            if shapes.get(key) != shape:
                raise UserError(f"{source}: layer '{name}' needs {key} of shape {list(shape)}, but the weights "
                                f"hold {list(shapes[key]) if key in shapes else 'none'}; restore the run or import again")
        made.add(name)
    return graph


def _parameter_shapes(node: dict) -> dict[str, tuple[int, ...]]:
    """Return the shapes of the weights a node's module holds, named as in GraphNet's state dict."""
    name, op = node["name"], node["op"]
    if op == "batchnorm":
        return {f"{name}.{key}": (node["features"],) for key in ("weight", "bias", "running_mean", "running_var")}
    if op in ("groupnorm", "layernorm", "scale"):
        return {f"{name}.{key}": (node["features"],) for key in ("weight", "bias")}
    if op == "prelu":
        return {f"{name}.weight": (node["features"],)}
    if op not in ("conv", "convtranspose", "dense"):
        return {}
    groups = node.get("groups", 1)
    if op == "dense":
        part, weight = "linear", (node["out"], node["in"])
    else:  # a transposed conv keeps its kernels (in, out / groups, kh, kw)
        part, weight = "conv", ((node["out"], node["in"] // groups) if op == "conv"
                                else (node["in"], node["out"] // groups)) + tuple(node["kernel"])
    shapes = {f"{name}.{part}.weight": weight} | ({f"{name}.{part}.bias": (node["out"],)} if node["bias"] else {})
    if node.get("bn") is not None:
        shapes |= {f"{name}.bn.{key}": (node["out"],) for key in ("weight", "bias", "running_mean", "running_var")}
    return shapes


def module_name(name: str, used: set[str]) -> str:
    """Return a layer name usable as a GraphNet child and not yet in `used` (which it joins).

    Dots and slashes become underscores; a name taken already, reserved, or one of nn.Module's own
    attributes (`eval`, `training`, ...) gets a number.
    """
    clean = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_") or "layer"
    clean = clean if not clean[0].isdigit() else f"layer_{clean}"
    candidate, n = clean, 1
    while candidate in used or candidate in RESERVED or hasattr(nn.Module, candidate):
        n += 1
        candidate = f"{clean}_{n}"
    used.add(candidate)
    return candidate


class GraphNet(nn.Module):
    """Runs a layer graph: each node is a child module named after the layer, called in graph order."""

    def __init__(self, graph: dict):
        super().__init__()
        if graph.get("format") != FORMAT or graph.get("version") != VERSION:
            raise UserError(f"not a convlens graph of version {VERSION}; import the model again")
        self.input_shape = tuple(graph["input_shape"])
        # (name, module, inputs, values no later layer reads); layer names never start with "_" (module_name strips it)
        self._steps: list[tuple[str, nn.Module, list[str], list[str]]] = []
        last_reader = {i: k for k, node in enumerate(graph["nodes"]) for i in node.get("inputs", [])}
        previous = "input"
        for k, node in enumerate(graph["nodes"]):
            self.add_module(node["name"], _module(node))
            done = sorted({i for i in node.get("inputs", []) if last_reader[i] == k})
            self._steps.append((node["name"], getattr(self, node["name"]), node.get("inputs", []), done))
            previous = node["name"] if node.get("inputs") == [previous] else None
        # A chain (each layer reads the one before) runs without the lookup table: Captum's occlusion and
        # the OIP search call forward hundreds of times, and the table cost a tenth of a millisecond each.
        self._chain = previous is not None

    def forward(self, x):
        if self._chain:
            for _, module, _, _ in self._steps:
                x = module(x)
            return x
        values = {"input": x}
        for name, module, inputs, done in self._steps:
            values[name] = module(*(values[i] for i in inputs))
            for i in done:  # freed once read for the last time: ResNet50 kept 100 MB a 224x224 image otherwise
                del values[i]
        return values[self._steps[-1][0]]


def fuse(graph: dict, tensors: dict) -> dict:
    """Merge a conv or dense with no activation into the batch norm and activation that alone follow it.

    Then `conv2d` names the map after its activation, and its pre-activation is the conv (or batch
    norm) inside it, as for convlens's own layers.
    """
    nodes = graph["nodes"]
    consumers = lambda n: [m for m in nodes if n["name"] in m["inputs"]]  # noqa: E731
    for node in list(nodes):
        if node["op"] not in ("conv", "convtranspose", "dense") or node.get("activation"):
            continue
        for follower_op in ("batchnorm", "activation"):
            after = consumers(node)
            if len(after) != 1 or after[0]["op"] != follower_op or (follower_op == "batchnorm" and "bn" in node):
                continue
            follower = after[0]
            if follower_op == "batchnorm":
                node["bn"] = follower["eps"]
                for key in ("weight", "bias", "running_mean", "running_var"):
                    tensors[f"{node['name']}.bn.{key}"] = tensors.pop(f"{follower['name']}.{key}")
            else:
                node["activation"] = follower["function"]
            for m in consumers(follower):
                m["inputs"] = [node["name"] if i == follower["name"] else i for i in m["inputs"]]
            nodes.remove(follower)
            if nodes[-1] is node:
                break
    for node in nodes:
        if node["op"] == "batchnorm" and any(n["name"] in node["inputs"] and n["op"] == "dense" for n in nodes):
            node["dims"] = 1
    return graph


def channels_last_flatten(graph: dict, tensors: dict) -> None:
    """Permute the inputs of each dense layer fed by a channels-last flatten from (H, W, C) order to PyTorch's (C, H, W).

    A flatten node marked `keras_order` flattened (H, W, C) maps in its framework (Keras, or a tf2onnx
    graph's Transpose then Reshape); GraphNet flattens (C, H, W), so the dense layer's columns follow.
    """
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
