"""PyTorch models through torch.export: an `nn.Module` given to the Python API, or a saved `.pt2` program.

torch.export traces the forward pass into ATen operators, so a ReLU written as `F.relu(x)` in
`forward` is a node like any module's; each operator carries the module it came from
(`nn_module_stack`), which names the layers as `named_modules()` does (`features.0` becomes
`features_0`). The graph is converted op by op into graph.py's layer graph, and graph.fuse makes
a convolution and the batch norm and ReLU after it one layer: `conv1` is the map after its ReLU,
however the ReLU was written.

Each value keeps its layout, as in onnx.py: a permute to channels last (ConvNeXt's LayerNorm and
Linear on each position's channels) only relabels the value, and the ops that work per channel read
the channels where the layout puts them; GraphNet holds every map NCHW.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import pt2
from .graph import (FORMAT, VERSION, activation_spec, channels_last_flatten, fuse, module_name, per_channel,
                    pointwise_conv)

aten = torch.ops.aten
# Activations without numbers, and those whose numbers come from the call (see _activation).
ACTIVATIONS = {aten.relu.default: "relu", aten.relu_.default: "relu", aten.tanh.default: "tanh",
               aten.sigmoid.default: "sigmoid", aten.sigmoid_.default: "sigmoid", aten.silu.default: "swish",
               aten.silu_.default: "swish", aten.selu.default: "selu", aten.mish.default: "mish",
               aten.hardswish.default: "hardswish", aten.hardswish_.default: "hardswish",
               aten.hardsigmoid.default: "hardsigmoid", aten.relu6.default: "clip", aten.erf.default: "erf",
               aten.sqrt.default: "sqrt"}
PARAMETRIC = {aten.hardtanh.default: "clip", aten.hardtanh_.default: "clip", aten.leaky_relu.default: "leaky_relu",
              aten.leaky_relu_.default: "leaky_relu", aten.elu.default: "elu", aten.gelu.default: "gelu",
              aten.softplus.default: "softplus", aten.pow.Tensor_Scalar: "pow"}
PASS_THROUGH = {aten.dropout.default, aten.dropout_.default, aten.clone.default, aten.contiguous.default,
                aten.alias.default, aten.detach.default, aten.feature_dropout.default}
FINAL = {aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default}
CONVS = (aten.conv2d.default, aten.conv2d.padding, aten.convolution.default)
TRANSPOSED = {aten.conv_transpose2d.input}
UPSAMPLES = {aten.upsample_nearest2d.vec: "nearest", aten.upsample_bilinear2d.vec: "bilinear"}
NCHW_ONLY = {*CONVS, *TRANSPOSED, *UPSAMPLES, aten.max_pool2d.default, aten.avg_pool2d.default,
             aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default, aten.group_norm.default,
             aten.instance_norm.default, aten.adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default}
POOLS = {aten.max_pool2d.default: "maxpool", aten.avg_pool2d.default: "avgpool"}
JOINS = {aten.add.Tensor: "add", aten.add_.Tensor: "add", aten.mul.Tensor: "mul", aten.cat.default: "concat"}
# x + c, x - c, x * c, x / c with a number c: one affine node (0.5 * x and 2 - x come as mul and rsub)
ARITHMETIC = {aten.add.Tensor: "add", aten.add_.Tensor: "add", aten.sub.Tensor: "sub", aten.mul.Tensor: "mul",
              aten.div.Tensor: "div", aten.rsub.Scalar: "rsub"}
SUPPORTED = ("Conv2d (any padding, stride, dilation, groups)", "ConvTranspose2d", "Linear (also on channels-last maps)",
             "BatchNorm1d/2d", "GroupNorm", "LayerNorm over the channels", "InstanceNorm2d (without running statistics)",
             "Upsample/interpolate (nearest, bilinear) by whole factors", "PReLU",
             "permute between NCHW and NHWC", "* or + a parameter of one number per channel",
             "MaxPool2d/AvgPool2d (padding, ceil_mode)", "AdaptiveAvgPool2d(1)/AdaptiveMaxPool2d(1)", "ZeroPad2d",
             "Flatten", "view", "Dropout", "ReLU/ReLU6/Hardtanh/LeakyReLU/ELU/SELU/GELU/SiLU/Mish/Hardswish/"
             "Hardsigmoid/Softplus/Tanh/Sigmoid/erf/sqrt/pow to a number (modules or functions)", "+", "*", "+ - * / a number",
             "torch.cat on channels",
             "softmax or log_softmax at the end")


def export(module: nn.Module, input_shape: tuple[int, int, int]) -> torch.export.ExportedProgram:
    """Return the exported program of a module in eval mode for one image of `input_shape` (C, H, W)."""
    try:
        return torch.export.export(module.eval(), (torch.zeros(1, *input_shape),))
    except Exception as e:  # torch.export raises many types; every one means the same to the user
        raise UserError(f"torch.export could not trace the model for inputs of {tuple(input_shape)} "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def load(path: Path) -> torch.export.ExportedProgram:
    """Return the program a `.pt2` file (torch.export.save) holds, without unpickling anything (see pt2.py)."""
    return pt2.load(path)


def to_graph(program: torch.export.ExportedProgram) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (graph, tensors named as GraphNet's state dict) for an exported program."""
    signature = program.graph_signature
    sources = signature.inputs_to_parameters | signature.inputs_to_buffers
    values = {**program.state_dict, **program.constants}
    weights = {name: values[fqn].detach().float().numpy() for name, fqn in sources.items()}
    names: dict[str, str] = {}  # fx node name -> graph node name
    layouts: dict[str, str] = {}  # fx node name -> where its channels are, for maps made channels last by a permute
    nodes, tensors, input_shape, used = [], {}, None, set()
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name not in weights:
                input_shape = tuple(node.meta["val"].shape[1:])
                names[node.name] = "input"
            continue
        if node.op == "output":
            break
        target = node.target
        if target is operator.getitem:  # the first result of a tuple-valued op (native batch norm) is its output
            names[node.name] = names[node.args[0].name]
            continue
        layout = layouts.get(node.args[0].name, "nchw") if node.args and isinstance(node.args[0], torch.fx.Node) else "nchw"
        if target in PASS_THROUGH or (target in FINAL and _is_last(node)):
            names[node.name], layouts[node.name] = names[node.args[0].name], layout
            continue
        if target == aten.permute.default:
            names[node.name], layouts[node.name] = names[node.args[0].name], _permuted(node, layout)
            continue
        if target in NCHW_ONLY and layout != "nchw":
            raise _unsupported(node, "on channels-last maps")
        name = module_name(_layer_name(node), used)
        converted = _convert(node, name, weights, tensors, layout)
        layouts[node.name] = layout
        converted["inputs"] = [names[a.name] for a in _tensor_args(node, weights)]
        nodes.append({"name": name, **converted})
        names[node.name] = name
    if input_shape is None or len(input_shape) != 3:
        raise UserError(f"the program takes inputs of shape {input_shape}; convlens opens image models (C, H, W)")
    graph = {"format": FORMAT, "version": VERSION, "input_shape": list(input_shape), "nodes": nodes}
    graph = fuse(graph, tensors)
    channels_last_flatten(graph, tensors)
    return graph, tensors


def _permuted(node, layout: str) -> str:
    """The layout after a permute between NCHW and NHWC; any other permute is refused."""
    dims = [int(d) % 4 for d in node.args[1]]
    if node.meta["val"].dim() == 4 and (dims, layout) in (([0, 2, 3, 1], "nchw"), ([0, 3, 1, 2], "nhwc")):
        return "nhwc" if layout == "nchw" else "nchw"
    raise _unsupported(node, f"dims {dims} of {layout} maps; convlens follows permutes between NCHW and NHWC")


def _is_last(node) -> bool:
    return all(user.op == "output" for user in node.users)


def _tensor_args(node, weights: dict) -> list:
    """The values a node reads that come from other nodes (torch.cat's come as a list), not weights."""
    args = [v for a in node.args for v in (a if isinstance(a, (list, tuple)) else [a])]
    return [a for a in args if isinstance(a, torch.fx.Node) and a.name not in weights]


def _layer_name(node) -> str:
    """Name a node after the module it came from (a residual block's sum after the block); functional
    activations keep their own node name, since one ReLU module may be called after several layers."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    path = stack[-1][0] if stack else ""
    return path if path and node.target not in ACTIVATIONS and node.target not in PARAMETRIC else node.name


def _unsupported(node, why: str = "") -> UserError:
    stack = list(node.meta.get("nn_module_stack", {}).values())
    where = f" in {stack[-1][0] or 'forward'}" if stack else ""
    return UserError(f"operator {node.target}{where}{' (' + why + ')' if why else ''} is not supported; convlens "
                     f"imports {', '.join(SUPPORTED)}")


def _weight(value, weights: dict):
    """The array of a parameter or buffer argument; None for anything else (no bias, or a computed value)."""
    return weights.get(value.name) if isinstance(value, torch.fx.Node) else None


def _arguments(node) -> dict:
    """Return an ATen call's arguments by their schema names, defaults filled in, whether given by position or name."""
    schema = node.target._schema.arguments
    given = dict(zip((a.name for a in schema), node.args)) | dict(node.kwargs)
    return {a.name: given[a.name] if a.name in given else a.default_value for a in schema}


def _pair(value) -> list[int]:
    return [int(v) for v in value] * (2 if len(value) == 1 else 1) if isinstance(value, (list, tuple)) else [int(value)] * 2


def _activation(node) -> str:
    """Return the graph's spec of an activation call, with the numbers its arguments give."""
    if node.target in ACTIVATIONS:
        return activation_spec("clip", 0, 6) if node.target == aten.relu6.default else ACTIVATIONS[node.target]
    a, name = _arguments(node), PARAMETRIC[node.target]
    if name == "clip":
        return activation_spec("clip", a["min_val"], a["max_val"])
    if name == "leaky_relu":
        return activation_spec("leaky_relu", a["negative_slope"])
    if name == "elu" and a["scale"] == 1 and a["input_scale"] == 1:
        return activation_spec("elu", a["alpha"])
    if name == "gelu":
        return "gelu_tanh" if a["approximate"] == "tanh" else "gelu"
    if name == "softplus" and a["beta"] == 1 and a["threshold"] == 20:
        return "softplus"
    if name == "pow":
        return activation_spec("pow", a["exponent"])
    raise _unsupported(node, "with " + ", ".join(f"{k}={v}" for k, v in a.items() if isinstance(v, (int, float, str))))


def _convert(node, name: str, weights: dict, tensors: dict, layout: str) -> dict:
    target, a = node.target, _arguments(node)
    if target in TRANSPOSED or (target in CONVS and a.get("transposed")):
        return _conv_transpose(node, a, name, weights, tensors)
    if target in CONVS:
        weight, bias, groups = _weight(a["weight"], weights), _weight(a["bias"], weights), int(a["groups"])
        if weight is None:
            raise _unsupported(node, "a kernel computed in forward, not a parameter")
        stride, padding = _pair(a["stride"]), a["padding"]
        if padding == "same" and stride != [1, 1]:
            raise _unsupported(node, "same padding with stride")
        tensors[f"{name}.conv.weight"] = weight
        if bias is not None:
            tensors[f"{name}.conv.bias"] = bias
        return {"op": "conv", "in": int(weight.shape[1]) * groups, "out": int(weight.shape[0]),
                "kernel": list(weight.shape[2:]), "stride": stride,
                "padding": padding if isinstance(padding, str) else _pair(padding), "dilation": _pair(a["dilation"]),
                "groups": groups, "bias": bias is not None}
    if target == aten.linear.default:
        weight, bias = _weight(a["weight"], weights), _weight(a["bias"], weights)
        if weight is None:
            raise _unsupported(node, "a weight computed in forward, not a parameter")
        if node.meta["val"].dim() == 4 and layout == "nhwc":  # each position's channels: a 1x1 conv
            tensors[f"{name}.conv.weight"] = weight[:, :, None, None]
            if bias is not None:
                tensors[f"{name}.conv.bias"] = bias
            return pointwise_conv(weight, bias is not None)
        if node.meta["val"].dim() != 2:
            raise _unsupported(node, "a Linear along the width of NCHW maps")
        tensors[f"{name}.linear.weight"] = weight
        if bias is not None:
            tensors[f"{name}.linear.bias"] = bias
        return {"op": "dense", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "bias": bias is not None}
    if target == aten.layer_norm.default:
        features = int(node.meta["val"].shape[-1])
        if list(a["normalized_shape"]) != [features] or (node.meta["val"].dim() == 4 and layout != "nhwc"):
            raise _unsupported(node, "normalising anything but each position's channels")
        weight, bias = _weight(a["weight"], weights), _weight(a["bias"], weights)
        tensors[f"{name}.weight"] = weight if weight is not None else np.ones(features, np.float32)
        tensors[f"{name}.bias"] = bias if bias is not None else np.zeros(features, np.float32)
        return {"op": "layernorm", "features": features, "eps": float(a["eps"])}
    if target == aten.prelu.default:
        slope = _weight(a["weight"], weights)
        if slope is None or slope.ndim != 1:
            raise _unsupported(node, "a slope that is not a parameter of one number per channel")
        tensors[f"{name}.weight"] = slope
        return {"op": "prelu", "features": len(slope)}
    if target in UPSAMPLES:
        return _upsample(node, a)
    if target in (aten.mul.Tensor, aten.add.Tensor, aten.add_.Tensor, aten.mul_.Tensor):
        parameter = next((_weight(v, weights) for v in (a["self"], a["other"]) if _weight(v, weights) is not None), None)
        channels_last = layout == "nhwc" or node.meta["val"].dim() == 2
        numbers = per_channel(parameter, channels_last) if a.get("alpha", 1) == 1 else None
        if numbers is not None:  # a layer scale, or a bias added per channel
            multiply = target in (aten.mul.Tensor, aten.mul_.Tensor)
            tensors[f"{name}.weight"] = numbers if multiply else np.ones_like(numbers)
            tensors[f"{name}.bias"] = np.zeros_like(numbers) if multiply else numbers
            return {"op": "scale", "features": len(numbers)}
    if target in (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default):
        for key in ("weight", "bias", "running_mean", "running_var"):
            tensors[f"{name}.{key}"] = _weight(a[key], weights)
        value = node.meta["val"][0] if isinstance(node.meta["val"], tuple) else node.meta["val"]
        return {"op": "batchnorm", "features": len(tensors[f"{name}.running_mean"]), "eps": float(a["eps"]),
                "dims": 2 if value.dim() == 4 else 1}
    if target in (aten.group_norm.default, aten.instance_norm.default):
        weight, bias = _weight(a["weight"], weights), _weight(a["bias"], weights)
        features = int(node.meta["val"].shape[1])
        if target == aten.instance_norm.default and (not a["use_input_stats"] or a["running_mean"] is not None):
            raise _unsupported(node, "running statistics (track_running_stats=True)")
        tensors[f"{name}.weight"] = weight if weight is not None else np.ones(features, np.float32)
        tensors[f"{name}.bias"] = bias if bias is not None else np.zeros(features, np.float32)
        groups = int(a["num_groups"]) if target == aten.group_norm.default else features
        return {"op": "groupnorm", "groups": groups, "features": features, "eps": float(a["eps"])}
    if target in POOLS:
        kernel = _pair(a["kernel_size"])
        if target == aten.max_pool2d.default and _pair(a["dilation"]) != [1, 1]:
            raise _unsupported(node, "a dilated max pool")
        if target == aten.avg_pool2d.default and a["divisor_override"] is not None:
            raise _unsupported(node, "divisor_override")
        pool = {"op": POOLS[target], "kernel": kernel, "stride": _pair(a["stride"]) if a["stride"] else kernel,
                "padding": _pair(a["padding"]), "ceil_mode": bool(a["ceil_mode"])}
        return pool | ({"count_include_pad": bool(a["count_include_pad"])} if target == aten.avg_pool2d.default else {})
    if _pools_globally(node, a):
        return {"op": "global_avgpool" if target in (aten.adaptive_avg_pool2d.default, aten.mean.dim) else "global_maxpool"}
    if target == aten.constant_pad_nd.default and len(a["pad"]) == 4 and a["value"] == 0:
        left, right, top, bottom = (int(p) for p in a["pad"])
        return {"op": "pad", "pads": [top, bottom, left, right]}
    if target in ACTIVATIONS or target in PARAMETRIC:
        return {"op": "activation", "function": _activation(node)}
    if target in (aten.flatten.using_ints, aten.view.default, aten.reshape.default):
        shape = node.meta["val"].shape
        if len(shape) != 2:
            raise _unsupported(node, f"a reshape to {tuple(shape)}; only flattening to (batch, features)")
        return {"op": "flatten", **({"keras_order": True} if layout == "nhwc" else {})}
    if target in ARITHMETIC and isinstance(a["other"], (int, float)) and a.get("alpha", 1) == 1:
        c = float(a["other"])
        scale, offset = {"add": (1.0, c), "sub": (1.0, -c), "mul": (c, 0.0), "div": (1.0 / c if c else None, 0.0),
                         "rsub": (-1.0, c)}[ARITHMETIC[target]]
        if scale is not None:
            return {"op": "affine", "scale": scale, "offset": offset}
    if target in JOINS:
        values = a["tensors"] if target == aten.cat.default else [a["self"], a["other"]]
        if target == aten.cat.default and a["dim"] % node.meta["val"].dim() != 1:
            raise _unsupported(node, f"joining along dimension {a['dim']}, not the channels")
        if any(_weight(v, weights) is not None or not isinstance(v, torch.fx.Node) for v in values) or a.get("alpha", 1) != 1:
            raise _unsupported(node, "a constant or alpha")
        return {"op": JOINS[target]}
    raise _unsupported(node)


def _conv_transpose(node, a: dict, name: str, weights: dict, tensors: dict) -> dict:
    weight, bias, groups = _weight(a["weight"], weights), _weight(a["bias"], weights), int(a["groups"])
    if weight is None:
        raise _unsupported(node, "a kernel computed in forward, not a parameter")
    tensors[f"{name}.conv.weight"] = weight
    if bias is not None:
        tensors[f"{name}.conv.bias"] = bias
    (ph, pw), (oh, ow) = _pair(a["padding"]), _pair(a["output_padding"])
    return {"op": "convtranspose", "in": int(weight.shape[0]), "out": int(weight.shape[1]) * groups,
            "kernel": list(weight.shape[2:]), "stride": _pair(a["stride"]), "pads": [-ph, oh - ph, -pw, ow - pw],
            "groups": groups, "dilation": _pair(a["dilation"]), "bias": bias is not None}


def _upsample(node, a: dict) -> dict:
    """Upsampling by whole factors, read from the shapes it maps between."""
    before, after = node.args[0].meta["val"].shape[-2:], node.meta["val"].shape[-2:]
    factors = [int(o) // int(i) for i, o in zip(before, after)]
    if any(int(o) != f * int(i) for i, o, f in zip(before, after, factors)):
        raise _unsupported(node, f"from {tuple(before)} to {tuple(after)}; convlens resizes by whole factors")
    mode = UPSAMPLES[node.target]
    return {"op": "upsample", "factor": factors, "mode": mode,
            **({"align_corners": bool(a["align_corners"])} if mode == "bilinear" else {})}


def _pools_globally(node, a: dict) -> bool:
    """True for an adaptive pool to 1x1, or a mean or max over both spatial axes."""
    if node.target in (aten.adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default):
        return _pair(a["output_size"]) == [1, 1]
    if node.target in (aten.mean.dim, aten.amax.default):
        return sorted(d % 4 for d in a["dim"]) == [2, 3]
    return False
