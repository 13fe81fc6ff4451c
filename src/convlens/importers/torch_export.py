"""PyTorch models through torch.export: an `nn.Module` given to the Python API, or a saved `.pt2` program.

torch.export traces the forward pass into ATen operators, so a ReLU written as `F.relu(x)` in
`forward` is a node like any module's; each operator carries the module it came from
(`nn_module_stack`), which names the layers as `named_modules()` does (`features.0` becomes
`features_0`). The graph is converted op by op into graph.py's layer graph, and graph.fuse makes
a convolution and the batch norm and ReLU after it one layer: `conv1` is the map after its ReLU,
however the ReLU was written.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import pt2
from .graph import FORMAT, VERSION, fuse, module_name

aten = torch.ops.aten
ACTIVATIONS = {aten.relu.default: "relu", aten.relu_.default: "relu", aten.tanh.default: "tanh",
               aten.sigmoid.default: "sigmoid", aten.gelu.default: "gelu", aten.silu.default: "swish",
               aten.selu.default: "selu", aten.elu.default: "elu"}
PASS_THROUGH = {aten.dropout.default, aten.dropout_.default, aten.clone.default, aten.contiguous.default,
                aten.alias.default, aten.detach.default, aten.feature_dropout.default}
FINAL = {aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default}
SUPPORTED = ("Conv2d", "Linear", "BatchNorm1d/2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d(1)", "Flatten", "view",
             "Dropout", "ReLU/Tanh/Sigmoid/GELU/SiLU/SELU/ELU (modules or functions)", "+", "*",
             "softmax at the end")


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
        if target in PASS_THROUGH or (target in FINAL and _is_last(node)):
            names[node.name] = names[node.args[0].name]
            continue
        name = module_name(_layer_name(node), used)
        converted = _convert(node, name, weights, tensors)
        converted["inputs"] = [names[a.name] for a in _tensor_args(node, weights)]
        nodes.append({"name": name, **converted})
        names[node.name] = name
    if input_shape is None or len(input_shape) != 3:
        raise UserError(f"the program takes inputs of shape {input_shape}; convlens opens image models (C, H, W)")
    graph = {"format": FORMAT, "version": VERSION, "input_shape": list(input_shape), "nodes": nodes}
    return fuse(graph, tensors), tensors


def _is_last(node) -> bool:
    return all(user.op == "output" for user in node.users)


def _tensor_args(node, weights: dict) -> list:
    return [a for a in node.args if isinstance(a, torch.fx.Node) and a.name not in weights]


def _layer_name(node) -> str:
    """Name a node after the module it came from; functional ops (F.relu, +) keep their own node name."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    path = stack[-1][0] if stack else ""
    module_op = node.target not in ACTIVATIONS and node.target not in (aten.add.Tensor, aten.mul.Tensor)
    return path if path and module_op else node.name


def _unsupported(node, why: str = "") -> UserError:
    stack = list(node.meta.get("nn_module_stack", {}).values())
    where = f" in {stack[-1][0] or 'forward'}" if stack else ""
    return UserError(f"operator {node.target}{where}{' (' + why + ')' if why else ''} is not supported; convlens "
                     f"imports {', '.join(SUPPORTED)}")


def _weight(node, index: int, weights: dict):
    arg = node.args[index] if len(node.args) > index else None
    return weights[arg.name] if isinstance(arg, torch.fx.Node) else None


def _ints(value, n: int = 2) -> list[int]:
    return list(value) * (n if len(value) == 1 else 1) if isinstance(value, (list, tuple)) else [int(value)] * n


def _convert(node, name: str, weights: dict, tensors: dict) -> dict:
    target, args = node.target, node.args
    if target in (aten.conv2d.default, aten.conv2d.padding):
        weight, bias = _weight(node, 1, weights), _weight(node, 2, weights)
        stride, padding = _ints(args[3] if len(args) > 3 else 1), args[4] if len(args) > 4 else 0
        dilation, groups = _ints(args[5] if len(args) > 5 else 1), args[6] if len(args) > 6 else 1
        if dilation != [1, 1] or groups != 1:
            raise _unsupported(node, "dilation or groups")
        if padding == "same" and stride != [1, 1]:
            raise _unsupported(node, "same padding with stride")
        tensors[f"{name}.conv.weight"] = weight
        if bias is not None:
            tensors[f"{name}.conv.bias"] = bias
        return {"op": "conv", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "kernel": list(weight.shape[2:]),
                "stride": stride, "padding": padding if isinstance(padding, str) else _ints(padding),
                "bias": bias is not None}
    if target == aten.linear.default:
        weight, bias = _weight(node, 1, weights), _weight(node, 2, weights)
        tensors[f"{name}.linear.weight"] = weight
        if bias is not None:
            tensors[f"{name}.linear.bias"] = bias
        return {"op": "dense", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "bias": bias is not None}
    if target in (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default):
        eps = args[-1] if target == aten._native_batch_norm_legit_no_training.default else args[7]
        for key, index in (("weight", 1), ("bias", 2), ("running_mean", 3), ("running_var", 4)):
            tensors[f"{name}.{key}"] = _weight(node, index, weights)
        features = len(tensors[f"{name}.running_mean"])
        value = node.meta["val"][0] if isinstance(node.meta["val"], tuple) else node.meta["val"]
        return {"op": "batchnorm", "features": features, "eps": float(eps), "dims": 2 if value.dim() == 4 else 1}
    if target in (aten.max_pool2d.default, aten.avg_pool2d.default):
        kernel = _ints(args[1])
        stride = _ints(args[2]) if len(args) > 2 and args[2] else kernel
        if (len(args) > 3 and any(_ints(args[3]))) or (len(args) > 5 and args[5]):
            raise _unsupported(node, "padding or ceil_mode")
        return {"op": "maxpool" if target == aten.max_pool2d.default else "avgpool", "kernel": kernel, "stride": stride}
    if target == aten.adaptive_avg_pool2d.default and _ints(args[1]) == [1, 1] or (
            target == aten.mean.dim and sorted(d % 4 for d in args[1]) == [2, 3]):
        return {"op": "global_avgpool"}
    if target in ACTIVATIONS:
        return {"op": "activation", "function": ACTIVATIONS[target]}
    if target in (aten.flatten.using_ints, aten.view.default, aten.reshape.default):
        shape = node.meta["val"].shape
        if len(shape) != 2:
            raise _unsupported(node, f"a reshape to {tuple(shape)}; only flattening to (batch, features)")
        return {"op": "flatten"}
    if target in (aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor):
        if len(_tensor_args(node, weights)) != 2 or node.kwargs.get("alpha", 1) != 1:
            raise _unsupported(node, "a constant or alpha")
        return {"op": "mul" if target == aten.mul.Tensor else "add"}
    raise _unsupported(node)
