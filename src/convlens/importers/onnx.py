"""ONNX models, read with the `onnx` package into the layer graph (no onnx2torch: it needs torchvision).

The operators CNNs export (SUPPORTED), from PyTorch's TorchScript and dynamo exporters at any opset.
Shape arithmetic (x.view(x.size(0), -1) exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape)
is followed as values, never made layers. Layers are named after the module path exporters record:
the dynamo exporter's name scopes, or the TorchScript exporter's node names
(`/features/features.0/Conv` becomes `features_0`); graph.fuse makes a Conv and the ReLU after it one layer.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from .graph import FORMAT, VERSION, activation_spec, fuse, module_name

ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Selu": "selu", "HardSwish": "hardswish",
               "Mish": "mish", "Softplus": "softplus", "Erf": "erf"}
ARITHMETIC = ("Add", "Sub", "Mul", "Div")  # with a number: an affine node; of two values: add or mul
PASS_THROUGH = ("Dropout", "Identity")
FINAL = ("Softmax", "LogSoftmax")  # at the end, dropped: the graph gives logits
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice")
POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool"}
GLOBAL_POOLS = {"GlobalAveragePool": "global_avgpool", "GlobalMaxPool": "global_maxpool",
                "ReduceMean": "global_avgpool", "ReduceMax": "global_maxpool"}
SUPPORTED = ("Conv (stride, dilation, groups, symmetric or SAME_UPPER padding)", "BatchNormalization",
             "InstanceNormalization", "Gemm", "MatMul",
             "MaxPool/AveragePool (padding, ceil_mode)", "GlobalAveragePool/GlobalMaxPool",
             "ReduceMean/ReduceMax over H and W", "Relu", "Clip", "LeakyRelu", "Elu", "Selu", "Gelu", "HardSigmoid",
             "HardSwish", "Mish", "Softplus", "Tanh", "Sigmoid", "Erf", "Add", "Mul", "Sub/Div by a number",
             "Concat on channels", "Flatten",
             "Reshape to (batch, features)", "Softmax/LogSoftmax (last)", "Dropout", "Identity",
             "Transpose (NHWC input)")


def read(path: Path):
    """Return the ModelProto of an .onnx file, checked."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        return model
    except Exception as e:  # protobuf and the checker raise many types; each means a damaged or foreign file
        raise UserError(f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                        "export it again") from None


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def to_graph(model) -> tuple[dict, dict[str, np.ndarray], str]:
    """Return (graph, tensors named as GraphNet's state dict, producer) of an ONNX ModelProto."""
    from onnx import numpy_helper

    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(_attributes(node)["value"])
    for name, value in constants.items():  # STRING or COMPLEX tensors are valid ONNX, never a CNN's weights
        if value.dtype.kind not in "biuf":
            kind = "complex" if value.dtype.kind == "c" else "STRING"
            raise UserError(f"the tensor '{name}' holds {kind} values; a CNN's weights and constants are real numbers")
    inputs = [i for i in g.input if i.name not in constants]
    if len(inputs) != 1:
        raise UserError(f"the model has {len(inputs)} inputs; convlens opens models of one image input")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    names, ranks = {inputs[0].name: "input"}, {inputs[0].name: len(dims)}
    nodes, tensors, used, input_shape = [], {}, set(), tuple(dims[1:])
    shapes: dict[str, int] = {}  # outputs of shape arithmetic: their length where known
    compute = [n for n in g.node if n.op_type != "Constant"]
    compute = [n for n in compute if not _shape_arithmetic(n, constants, shapes)]
    for i, node in enumerate(compute):
        op, a = node.op_type, _attributes(node)
        if op == "Reshape" and node.input[1] in shapes:
            constants[node.input[1]] = np.zeros(shapes[node.input[1]])  # only its length matters below
        sources = [x for x in node.input if x and x not in constants]
        last = i == len(compute) - 1
        if op in PASS_THROUGH or (op in FINAL and last) or _nhwc_input(node, a, names):
            if op == "Transpose":
                input_shape = (dims[3], dims[1], dims[2])
            names[node.output[0]], ranks[node.output[0]] = names[sources[0]], ranks[sources[0]]
            continue
        if op == "Add" and len(sources) == 1 and _adds_bias(node, sources[0], constants, names, nodes, tensors):
            names[node.output[0]], ranks[node.output[0]] = names[sources[0]], ranks[sources[0]]
            continue
        name = module_name(_layer_name(node), used)
        converted, rank = _convert(node, op, a, name, constants, tensors, ranks.get(sources[0], 4) if sources else 4)
        nodes.append({"name": name, **converted, "inputs": [names[x] for x in sources]})
        names[node.output[0]], ranks[node.output[0]] = name, rank
    if len(input_shape) != 3 or not all(input_shape):
        raise UserError(f"the model's input has shape {dims}; convlens opens image models (N, C, H, W) of fixed size")
    graph = {"format": FORMAT, "version": VERSION, "input_shape": [int(d) for d in input_shape], "nodes": nodes}
    return fuse(graph, tensors), tensors, model.producer_name or "onnx"


def _shape_arithmetic(node, constants: dict, shapes: dict) -> bool:
    """Record and skip a node that computes a shape; its output length is the count of a Concat's parts."""
    op = node.op_type
    if op == "Shape" or (op in SHAPE_OPS and all(x in shapes or x in constants for x in node.input if x)):
        shapes[node.output[0]] = len(node.input) if op == "Concat" else 1
        return True
    return False


def _nhwc_input(node, a: dict, names: dict) -> bool:
    return node.op_type == "Transpose" and names.get(node.input[0]) == "input" and list(a.get("perm", [])) == [0, 3, 1, 2]


def _adds_bias(node, source: str, constants: dict, names: dict, nodes: list, tensors: dict) -> bool:
    """Fold MatMul + Add(bias) into one dense layer; True when it did."""
    producer = next((n for n in nodes if n["name"] == names[source]), None)
    bias = next(constants[x] for x in node.input if x in constants)
    if producer is None or producer["op"] != "dense" or producer["bias"] or bias.shape != (producer["out"],):
        return False
    producer["bias"] = True
    tensors[f"{producer['name']}.linear.bias"] = bias
    return True


def _layer_name(node) -> str:
    """The module a node came from: the dynamo exporter's last module scope, or the TorchScript exporter's path."""
    scopes = next((re.findall(r"'([^']*)'", p.value[:4096]) for p in node.metadata_props
                   if p.key == "pkg.torch.onnx.name_scopes"), [])
    if len(scopes) >= 2 and scopes[-2]:
        return scopes[-2]
    scopes = [p for p in node.name.split("/") if p][:-1]  # "/layer1/layer1.0/conv1/Conv": layer1.0.conv1
    path = ""
    for scope in scopes:  # a Sequential's children are scoped by their full path, other modules by attribute
        path = scope if not path or scope.startswith(path + ".") else f"{path}.{scope}"
    return path or node.name or node.op_type.lower()


def _unsupported(node, why: str = "") -> UserError:
    return UserError(f"operator {node.op_type} ('{node.name}'){' (' + why + ')' if why else ''} is not supported; "
                     f"convlens imports {', '.join(SUPPORTED)}")


def _convert(node, op: str, a: dict, name: str, constants: dict, tensors: dict, rank: int) -> tuple[dict, int]:
    """Return (node attributes, rank of its output)."""
    if op == "Conv":
        weight = constants[node.input[1]]
        bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        pads, auto = list(a.get("pads", [0, 0, 0, 0])), a.get("auto_pad", b"NOTSET").decode()
        if auto == "SAME_UPPER":
            padding = "same"
        elif pads[:2] == pads[2:] and auto in ("NOTSET", "VALID"):
            padding = pads[:2]
        else:
            raise _unsupported(node, f"asymmetric padding {pads} / {auto}")
        groups = int(a.get("group", 1))
        tensors[f"{name}.conv.weight"] = weight
        if bias is not None:
            tensors[f"{name}.conv.bias"] = bias
        return {"op": "conv", "in": int(weight.shape[1]) * groups, "out": int(weight.shape[0]),
                "kernel": list(weight.shape[2:]), "stride": list(a.get("strides", [1, 1])), "padding": padding,
                "dilation": list(a.get("dilations", [1, 1])), "groups": groups, "bias": bias is not None}, 4
    if op in ("Gemm", "MatMul"):
        weight = constants.get(node.input[1])
        if weight is None or (op == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1 or a.get("beta", 1.0) != 1)):
            raise _unsupported(node, "a weight that is not a constant, or transA/alpha/beta")
        weight = weight if op == "Gemm" and a.get("transB", 0) else weight.T  # -> (out, in)
        bias = constants.get(node.input[2]) if op == "Gemm" and len(node.input) > 2 else None
        tensors[f"{name}.linear.weight"] = weight
        if bias is not None:
            tensors[f"{name}.linear.bias"] = bias
        return {"op": "dense", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "bias": bias is not None}, 2
    if op == "BatchNormalization":
        for key, index in (("weight", 1), ("bias", 2), ("running_mean", 3), ("running_var", 4)):
            tensors[f"{name}.{key}"] = constants[node.input[index]]
        return {"op": "batchnorm", "features": int(len(tensors[f"{name}.running_mean"])),
                "eps": float(a.get("epsilon", 1e-5)), "dims": 2 if rank == 4 else 1}, rank
    if op == "InstanceNormalization" and rank == 4:
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = constants[node.input[1]], constants[node.input[2]]
        features = len(tensors[f"{name}.weight"])
        return {"op": "groupnorm", "groups": features, "features": features, "eps": float(a.get("epsilon", 1e-5))}, 4
    if op in POOLS:
        pads, kernel = list(a.get("pads", [0, 0, 0, 0])), list(a["kernel_shape"])
        if pads[:2] != pads[2:] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or \
                any(d != 1 for d in a.get("dilations", [1, 1])):
            raise _unsupported(node, f"asymmetric padding {pads}, auto_pad or dilation")
        pool = {"op": POOLS[op], "kernel": kernel, "stride": list(a.get("strides", [1, 1])), "padding": pads[:2],
                "ceil_mode": bool(a.get("ceil_mode", 0))}
        return pool | ({"count_include_pad": bool(a.get("count_include_pad", 0))} if op == "AveragePool" else {}), 4
    if op in GLOBAL_POOLS and (op.startswith("Global") or _reduces_spatially(node, a, constants)):
        return {"op": GLOBAL_POOLS[op]}, 2
    if op in ACTIVATIONS or op in ("Clip", "LeakyRelu", "Elu", "HardSigmoid", "Gelu"):
        return {"op": "activation", "function": _activation(node, op, a, constants)}, rank
    if op == "Flatten" and a.get("axis", 1) == 1:
        return {"op": "flatten"}, 2
    if op == "Reshape" and len(constants.get(node.input[1], [])) == 2 and rank in (2, 4):
        return {"op": "flatten"}, 2
    if op in ("Add", "Mul") and len([x for x in node.input if x not in constants]) == 2:
        return {"op": "add" if op == "Add" else "mul"}, rank
    if op in ARITHMETIC and len(node.input) == 2 and _number(constants.get(node.input[1])) is not None:
        c = _number(constants[node.input[1]])  # x + c, x - c, x * c, x / c
        scale, offset = {"Add": (1.0, c), "Sub": (1.0, -c), "Mul": (c, 0.0), "Div": (1.0 / c if c else None, 0.0)}[op]
        if scale is not None:
            return {"op": "affine", "scale": scale, "offset": offset}, rank
    if op in ("Add", "Sub", "Mul") and len(node.input) == 2 and _number(constants.get(node.input[0])) is not None:
        c = _number(constants[node.input[0]])  # c + x, c - x, c * x
        scale, offset = {"Add": (1.0, c), "Sub": (-1.0, c), "Mul": (c, 0.0)}[op]
        return {"op": "affine", "scale": scale, "offset": offset}, rank
    if op == "Concat" and a.get("axis") in (1, -3 if rank == 4 else -1):
        return {"op": "concat"}, rank
    raise _unsupported(node)


def _number(value) -> float | None:
    """A constant that is one number, whatever its shape ((), (1,), (1, 1, 1, 1)); else None."""
    return float(np.ravel(value)[0]) if value is not None and np.size(value) == 1 else None


def _activation(node, op: str, a: dict, constants: dict) -> str:
    """Return the graph's spec of an activation node, with the numbers its attributes or inputs give."""
    if op in ACTIVATIONS:
        return ACTIVATIONS[op]
    if op == "Clip":  # bounds are inputs from opset 11, attributes before; either may be absent
        given = [constants[x] for x in node.input[1:3] if x and x in constants]
        if len(given) != len([x for x in node.input[1:3] if x]):
            raise _unsupported(node, "bounds computed in the graph")
        bounds = [float(a.get("min", -np.inf)), float(a.get("max", np.inf))]
        for k, x in enumerate(node.input[1:3]):
            if x:
                bounds[k] = float(constants[x])
        return activation_spec("clip", *bounds)
    if op == "LeakyRelu":
        return activation_spec("leaky_relu", a.get("alpha", 0.01))
    if op == "Elu":
        return activation_spec("elu", a.get("alpha", 1.0))
    if op == "HardSigmoid":
        return activation_spec("hardsigmoid", a.get("alpha", 0.2), a.get("beta", 0.5))
    return "gelu_tanh" if a.get("approximate", b"none") == b"tanh" else "gelu"


def _reduces_spatially(node, a: dict, constants: dict) -> bool:
    """True for a ReduceMean or ReduceMax over H and W (axes an attribute before opset 18, an input after)."""
    axes = a.get("axes", constants.get(node.input[1]) if len(node.input) > 1 else None)
    return axes is not None and sorted(int(x) % 4 for x in np.ravel(axes)) == [2, 3]
