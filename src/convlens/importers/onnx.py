"""ONNX models, read with the `onnx` package into the layer graph (no onnx2torch: it needs torchvision).

The operators CNNs export (SUPPORTED), from PyTorch's TorchScript and dynamo exporters and from
tf2onnx (Keras), at any opset. Shape arithmetic (x.view(x.size(0), -1) exports as Shape -> Gather
-> Unsqueeze -> Concat -> Reshape) is followed as values, never made layers.

Each value keeps its layout: convolutions read NCHW, but a Keras model converted by tf2onnx takes
NHWC images and keeps channels last between its Transposes (its Flatten, its Dense on maps, its
batch norms left as Mul and Add by per-channel constants), and so does PyTorch's channels-last code
(ConvNeXt's LayerNorm and Linear between permutes). A Transpose only relabels a value; an operator
that works per channel reads the channel axis from the layout; GraphNet holds every map NCHW.

Layers are named after the module path exporters record: the dynamo exporter's name scopes, the
TorchScript exporter's node names (`/features/features.0/Conv` becomes `features_0`), or tf2onnx's
Keras layer names (`model/block_1_pad/Pad` becomes `block_1_pad`); graph.fuse makes a Conv and the
ReLU after it one layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .graph import (FORMAT, VERSION, activation_spec, channels_last_flatten, fuse, module_name, per_channel,
                    pointwise_conv)

ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Selu": "selu", "HardSwish": "hardswish",
               "Mish": "mish", "Softplus": "softplus", "Erf": "erf", "Sqrt": "sqrt"}
PARAMETRIC = ("Clip", "LeakyRelu", "Elu", "HardSigmoid", "Gelu", "Pow")
ARITHMETIC = ("Add", "Sub", "Mul", "Div")  # with a number: an affine node; per channel: a scale; of two values: add or mul
PASS_THROUGH = ("Dropout", "Identity")
FINAL = ("Softmax", "LogSoftmax")  # at the end, dropped: the graph gives logits
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice")
POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool"}
CONSTANT_FOLDS = {"Transpose": lambda x, perm=None: np.transpose(x, perm), "Identity": lambda x: x,
                  "Cast": lambda x, to=1: x.astype(np.float32) if to == 1 else x,
                  "Reshape": lambda x, shape, allowzero=0: x.reshape([int(v) for v in shape])}
NCHW_ONLY = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization", "InstanceNormalization",
             "Resize", "GlobalAveragePool", "GlobalMaxPool")
SUPPORTED = ("Conv (stride, dilation, groups, any padding)", "ConvTranspose", "BatchNormalization",
             "InstanceNormalization (also between the Reshapes that spell GroupNorm)", "LayerNormalization over the channels", "Gemm", "MatMul (also on channels-last maps)",
             "MaxPool/AveragePool (padding, ceil_mode, TensorFlow's 'same')", "GlobalAveragePool/GlobalMaxPool",
             "ReduceMean/ReduceMax over H and W", "Resize (nearest, bilinear) by whole factors", "Pad with zeros",
             "Relu", "PRelu", "Clip", "LeakyRelu", "Elu", "Selu", "Gelu", "HardSigmoid", "HardSwish", "Mish",
             "Softplus", "Tanh", "Sigmoid", "Erf", "Sqrt", "Pow to a number", "Add/Mul of two values", "Add/Sub/Mul/Div by a number or a number per channel",
             "Concat on channels", "Flatten", "Reshape/Squeeze/Unsqueeze to (batch, features) or (batch, C, 1, 1)",
             "Transpose between NCHW and NHWC", "Softmax/LogSoftmax (last)", "Dropout", "Identity")
RAW_PIXEL_SCALES = (1 / 255, 1 / 127.5)  # Keras's Rescaling of 0-255 pixels, as tf2onnx exports it


@dataclass(frozen=True)
class Value:
    """A value of the ONNX graph as the layer graph holds it."""

    name: str  # the graph node that makes it ("input" for the image)
    rank: int  # 4 for maps, 2 for vectors
    layout: str = "nchw"  # where a map's channels are in the ONNX graph: "nchw" or "nhwc" (GraphNet's is NCHW)


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


def _static_shapes(model) -> dict[str, tuple]:
    """Each value's shape as onnx's shape inference finds it (None for a dimension it cannot tell)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph  # data_prop: Reshape(x, Shape(y))
    except Exception:  # inference is a help, not a check: a graph it cannot follow still converts where it can
        inferred = model.graph
    shapes = {}
    for info in [*inferred.value_info, *inferred.input, *inferred.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


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
    if len(dims) != 4 or not all(dims[1:]):
        raise UserError(f"the model's input has shape {dims}; convlens opens image models of fixed size")
    # Channels last when the last axis looks like an image's channels and the first does not (a tf2onnx graph)
    layout = "nhwc" if dims[3] in (1, 3, 4) and dims[1] not in (1, 3, 4) else "nchw"
    input_shape = (dims[3], dims[1], dims[2]) if layout == "nhwc" else tuple(dims[1:])
    converter = _Converter(constants, _static_shapes(model), {inputs[0].name: Value("input", 4, layout)})
    compute = [n for n in g.node if n.op_type != "Constant"]
    compute = [n for n in compute if not converter.shape_arithmetic(n)]
    for i, node in enumerate(compute):
        converter.convert(node, last=i == len(compute) - 1)
    graph = {"format": FORMAT, "version": VERSION, "input_shape": [int(d) for d in input_shape],
             "nodes": converter.nodes}
    graph = fuse(graph, converter.tensors)
    channels_last_flatten(graph, converter.tensors)
    return graph, converter.tensors, model.producer_name or "onnx"


class _Converter:
    """Turns ONNX nodes, in order, into layer-graph nodes, keeping each ONNX value's Value."""

    def __init__(self, constants: dict, shapes: dict, values: dict[str, Value]):
        self.constants, self.shapes, self.values = constants, shapes, values
        self.lengths: dict[str, int] = {}  # outputs of shape arithmetic: their length where known
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.used: set[str] = set()

    def shape_arithmetic(self, node) -> bool:
        """Record and skip a node that computes a shape (its output length is the count of a Concat's parts),
        or that only rearranges a constant (a weight transposed in the graph): that is folded into a constant."""
        op, inputs = node.op_type, [x for x in node.input if x]
        if op in CONSTANT_FOLDS and inputs and all(x in self.constants for x in inputs):
            self.constants[node.output[0]] = CONSTANT_FOLDS[op](*(self.constants[x] for x in inputs), **_attributes(node))
            return True
        if op == "Shape" or (op in SHAPE_OPS and all(x in self.lengths or x in self.constants for x in node.input if x)):
            self.lengths[node.output[0]] = len(node.input) if op == "Concat" else 1
            return True
        return False

    def convert(self, node, last: bool) -> None:
        op, a = node.op_type, _attributes(node)
        sources = [x for x in node.input if x and x not in self.constants and x not in self.lengths]
        if not sources:
            raise _unsupported(node, "it reads no value of the image")
        value = self.values[sources[0]]
        if op in NCHW_ONLY and value.rank == 4 and value.layout != "nchw":
            raise _unsupported(node, "on a channels-last value")
        if op in PASS_THROUGH or (op in FINAL and last):
            self.values[node.output[0]] = value
            return
        if (relabelled := self._relabel(node, op, a, value)) is not None:
            self.values[node.output[0]] = relabelled
            return
        if op == "Add" and len(sources) == 1 and self._adds_bias(node, value):
            self.values[node.output[0]] = value
            return
        base = _layer_name(node)
        if value.name == module_name(base, set()):  # a second op of the layer that made its input (Keras's Conv2D
            base = f"{base}_{op.lower()}"  # and its ReLU): named for it, not numbered, so conv2d_2 stays Keras's own
        name = module_name(base, self.used)
        parts, result = self._layer(node, op, a, name, value, sources)
        for part in parts:  # a conv with uneven padding is a pad, then the conv
            part_name = part.pop("name", name)
            self.nodes.append({"name": part_name, **part, "inputs": [self.values[x].name for x in sources]
                               if part is parts[0] else [self.nodes[-1]["name"]]})
        self.values[node.output[0]] = Value(self.nodes[-1]["name"], *result)

    def _relabel(self, node, op: str, a: dict, value: Value) -> Value | None:
        """The Value of a node that only moves axes in the ONNX graph (a Transpose between NCHW and NHWC, a
        reshape that is one); None for any other node."""
        if op == "Transpose":
            perm = list(a.get("perm", []))
            if value.rank == 4 and perm in ([0, 3, 1, 2], [0, 2, 3, 1]) and \
                    value.layout == ("nhwc" if perm == [0, 3, 1, 2] else "nchw"):
                return Value(value.name, 4, "nchw" if perm == [0, 3, 1, 2] else "nhwc")
            raise _unsupported(node, f"perm {perm} on a {value.layout if value.rank == 4 else 'vector'} value")
        if op == "Reshape" and value.rank == 4 and np.array_equal(self.constants.get(node.input[1], []), [-1]):
            return Value(value.name, 1, value.layout)  # all values in a row: taken back to maps by the Gather below
        if op == "Gather" and value.rank == 1:
            # The dynamo exporter's as_strided for a batch of one: every value gathered back in its own place
            indices = self.constants.get(node.input[1])
            if indices is not None and indices.ndim == 4 and np.array_equal(np.ravel(indices), np.arange(indices.size)):
                return Value(value.name, 4, value.layout)
            raise _unsupported(node, "a gather that does not put each value back in its place")
        if op == "Reshape" and (grouped := self._grouped(node, value)) is not None:
            return grouped
        if op == "Reshape" and value.rank == 4:
            before, after = self.shapes.get(node.input[0]), self._target(node)
            if before and after and None not in before[1:] and tuple(before[1:]) == tuple(after[1:]):
                return value  # to the shape it has (tf2onnx's reshape of an SE block's (C, 1, 1))
            if before and after and len(after) == 4 and before[1:] != after[1:] and None not in before[1:] and \
                    sorted(before[1:]) == sorted(after[1:]) and (1 in before[1:3] or before[3] == 1 or before[1] == 1):
                flipped = "nhwc" if value.layout == "nchw" else "nchw"  # one channel, or 1x1: the same memory either way
                return Value(value.name, 4, flipped)
        return None

    def _grouped(self, node, value: Value) -> Value | None:
        """How exporters spell GroupNorm: maps reshaped to (N, groups, -1), an InstanceNormalization of those,
        reshaped back, then a Mul and Add per channel. The reshapes relabel; the norm becomes a groupnorm."""
        if value.rank == 3 and value.layout == "normed":
            return Value(value.name, 4, "nchw")  # back to the maps it was made from
        before, after = self.shapes.get(node.input[0]), self._target(node)
        if value.rank != 4 or value.layout != "nchw" or not before or not after or len(after) != 3:
            return None
        channels, groups = before[1], after[1]
        if not channels or not groups or channels % groups:
            return None
        return Value(value.name, 3, f"groups:{channels}")

    def _target(self, node) -> tuple | None:
        """A Reshape's target shape: the constant it is given, else what shape inference found."""
        shape = self.constants.get(node.input[1]) if len(node.input) > 1 else None
        inferred = self.shapes.get(node.output[0])
        if inferred and None not in inferred[1:]:
            return inferred
        return tuple(int(v) for v in shape) if shape is not None else None

    def _adds_bias(self, node, value: Value) -> bool:
        """Fold MatMul + Add(bias) into the dense layer (or pointwise conv) before it; True when it did."""
        producer = self.nodes[-1] if self.nodes and self.nodes[-1]["name"] == value.name else None
        bias = next(self.constants[x] for x in node.input if x in self.constants)
        if producer is None or producer["op"] not in ("dense", "conv") or producer["bias"] or \
                np.shape(bias) not in ((producer["out"],), (1, producer["out"])):
            return False
        if producer["op"] == "conv" and value.layout != "nhwc":  # (C,) adds along W of an NCHW map
            return False
        producer["bias"] = True
        self.tensors[f"{producer['name']}.{'linear' if producer['op'] == 'dense' else 'conv'}.bias"] = np.ravel(bias)
        return True

    def _layer(self, node, op: str, a: dict, name: str, value: Value, sources: list[str]) -> tuple[list[dict], tuple]:
        """Return (the layer-graph nodes of one ONNX node, (rank, layout) of its output)."""
        c, tensors, rank, layout = self.constants, self.tensors, value.rank, value.layout
        if op == "Conv":
            return self._conv(node, a, name, value), (4, "nchw")
        if op == "ConvTranspose":
            return [self._conv_transpose(node, a, name)], (4, "nchw")
        if op in ("Gemm", "MatMul"):
            weight = c.get(node.input[1])
            if weight is None or weight.ndim != 2 or (op == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1
                                                                       or a.get("beta", 1.0) != 1)):
                raise _unsupported(node, "a weight that is not a constant matrix, or transA/alpha/beta")
            weight = weight if op == "Gemm" and a.get("transB", 0) else weight.T  # -> (out, in)
            bias = c.get(node.input[2]) if op == "Gemm" and len(node.input) > 2 else None
            if rank == 4 and layout == "nhwc":  # applied to each position's channels: a 1x1 conv
                tensors[f"{name}.conv.weight"] = weight[:, :, None, None]
                return [pointwise_conv(weight, bias is not None)], (4, "nhwc")
            if rank != 2:
                raise _unsupported(node, "a matrix product along the width of NCHW maps")
            tensors[f"{name}.linear.weight"] = weight
            if bias is not None:
                tensors[f"{name}.linear.bias"] = bias
            return [{"op": "dense", "in": int(weight.shape[1]), "out": int(weight.shape[0]), "bias": bias is not None}], (2, None)
        if op == "BatchNormalization":
            for key, index in (("weight", 1), ("bias", 2), ("running_mean", 3), ("running_var", 4)):
                tensors[f"{name}.{key}"] = c[node.input[index]]
            return [{"op": "batchnorm", "features": int(len(tensors[f"{name}.running_mean"])),
                     "eps": float(a.get("epsilon", 1e-5)), "dims": 2 if rank == 4 else 1}], (rank, layout)
        if op == "InstanceNormalization" and rank == 3 and (layout or "").startswith("groups:"):
            channels, weight, bias = int(layout.split(":")[1]), c[node.input[1]], c[node.input[2]]
            tensors[f"{name}.weight"] = np.repeat(weight, channels // len(weight))  # each group's to its channels
            tensors[f"{name}.bias"] = np.repeat(bias, channels // len(bias))
            return [{"op": "groupnorm", "groups": len(weight), "features": channels,
                     "eps": float(a.get("epsilon", 1e-5))}], (3, "normed")
        if op == "InstanceNormalization" and rank == 4:
            tensors[f"{name}.weight"], tensors[f"{name}.bias"] = c[node.input[1]], c[node.input[2]]
            features = len(tensors[f"{name}.weight"])
            return [{"op": "groupnorm", "groups": features, "features": features,
                     "eps": float(a.get("epsilon", 1e-5))}], (4, "nchw")
        if op == "LayerNormalization" and a.get("axis", -1) in (-1, rank - 1) and (rank == 2 or layout == "nhwc"):
            weight = c[node.input[1]]
            bias = c[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(weight)
            tensors[f"{name}.weight"], tensors[f"{name}.bias"] = weight, bias
            return [{"op": "layernorm", "features": len(weight), "eps": float(a.get("epsilon", 1e-5))}], (rank, layout)
        if op in POOLS:
            return [self._pool(node, op, a, value)], (4, "nchw")
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            kind = "global_avgpool" if op == "GlobalAveragePool" else "global_maxpool"
            return [{"op": kind, "keepdims": True}], (4, "nchw")
        if op in ("ReduceMean", "ReduceMax") and rank == 4 and self._reduces_spatially(node, a, layout):
            keep = bool(a.get("keepdims", 1))
            return [{"op": "global_avgpool" if op == "ReduceMean" else "global_maxpool", "keepdims": keep}], \
                (4 if keep else 2, layout)
        if op == "ReduceMean":
            raise _unsupported(node, "a mean over the channels: a LayerNorm exported below opset 17? export with "
                                     "opset_version=17 or later, which keeps it one LayerNormalization")
        if op == "Resize":
            return [self._resize(node, a, value)], (4, "nchw")
        if op == "Pad":
            return [self._pad(node, a, value)], (4, layout)
        if op in ACTIVATIONS or op in PARAMETRIC:
            return [{"op": "activation", "function": _activation(node, op, a, c)}], (rank, layout)
        if op == "PRelu":
            slope = self._per_channel(c.get(node.input[1]), value)
            if slope is None:
                raise _unsupported(node, "a slope that is not one number or one per channel")
            tensors[f"{name}.weight"] = slope
            return [{"op": "prelu", "features": len(slope)}], (rank, layout)
        if op in ("Flatten", "Reshape", "Squeeze") and self._flattens(node, op, a, value):
            keras_order = rank == 4 and layout == "nhwc"  # (H, W, C) flattening, as Keras's Flatten
            return [{"op": "flatten", **({"keras_order": True} if keras_order else {})}], (2, None)
        if op in ("Reshape", "Unsqueeze") and rank == 2:
            return [self._to_map(node, op, a)], (4, "nchw" if self._to_map_layout(node, op, a) == "nchw" else "nhwc")
        if op in ("Add", "Mul") and len(sources) == 2:
            other = self.values[sources[1]]
            if (other.rank, other.layout) != (rank, layout) and rank == other.rank == 4:
                raise _unsupported(node, "two values of different layouts")
            return [{"op": "add" if op == "Add" else "mul"}], (max(rank, other.rank), layout if rank == 4 else other.layout)
        if op in ARITHMETIC and len(node.input) == 2:
            return [self._arithmetic(node, op, name, value)], (rank, layout)
        if op == "Concat" and a.get("axis") in _channel_axes(value):
            return [{"op": "concat"}], (rank, layout)
        raise _unsupported(node)

    def _conv(self, node, a: dict, name: str, value: Value) -> list[dict]:
        weight = self.constants.get(node.input[1])
        if weight is None:
            raise _unsupported(node, "a kernel computed in the graph, not a constant")
        bias = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        kernel, strides = list(weight.shape[2:]), list(a.get("strides", [1, 1]))
        dilations = list(a.get("dilations", [1, 1]))
        pads, auto = list(a.get("pads", [0, 0, 0, 0])), a.get("auto_pad", b"NOTSET").decode()
        before = []
        if auto == "SAME_UPPER" or (auto == "NOTSET" and pads[:2] != pads[2:] and
                                    pads == self._same_pads(node.input[0], kernel, strides, dilations)):
            padding = "same"
        elif auto in ("NOTSET", "VALID") and pads[:2] == pads[2:]:
            padding = pads[:2]
        elif auto == "NOTSET":  # uneven padding that is not TensorFlow's 'same': a pad layer first
            top, left, bottom, right = pads
            before, padding = [{"name": module_name(f"{name}_pad", self.used), "op": "pad",
                                "pads": [top, bottom, left, right]}], [0, 0]
        else:
            raise _unsupported(node, f"auto_pad {auto}")
        groups = int(a.get("group", 1))
        self.tensors[f"{name}.conv.weight"] = weight
        if bias is not None:
            self.tensors[f"{name}.conv.bias"] = bias
        return before + [{"name": name, "op": "conv", "in": int(weight.shape[1]) * groups, "out": int(weight.shape[0]),
                          "kernel": kernel, "stride": strides, "padding": padding, "dilation": dilations,
                          "groups": groups, "bias": bias is not None}]

    def _same_pads(self, value: str, kernel: list, strides: list, dilations: list) -> list[int] | None:
        """TensorFlow's 'same' pads [top, left, bottom, right] for the value's size, or None if its size is unknown."""
        shape = self.shapes.get(value)
        if not shape or len(shape) != 4 or None in shape[2:]:
            return None
        before, after = [], []
        for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return before + after

    def _conv_transpose(self, node, a: dict, name: str) -> dict:
        weight = self.constants.get(node.input[1])
        if weight is None or a.get("output_shape") or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise _unsupported(node, "a kernel that is not a constant, output_shape or auto_pad")
        bias = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
        extra_h, extra_w = a.get("output_padding", [0, 0])
        groups = int(a.get("group", 1))
        self.tensors[f"{name}.conv.weight"] = weight
        if bias is not None:
            self.tensors[f"{name}.conv.bias"] = bias
        return {"op": "convtranspose", "in": int(weight.shape[0]), "out": int(weight.shape[1]) * groups,
                "kernel": list(weight.shape[2:]), "stride": list(a.get("strides", [1, 1])),
                "pads": [-top, extra_h - bottom, -left, extra_w - right], "groups": groups,
                "dilation": list(a.get("dilations", [1, 1])), "bias": bias is not None}

    def _pool(self, node, op: str, a: dict, value: Value) -> dict:
        pads, kernel, strides = list(a.get("pads", [0, 0, 0, 0])), list(a["kernel_shape"]), list(a.get("strides", [1, 1]))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise _unsupported(node, "auto_pad or dilation")
        if pads[:2] != pads[2:]:
            same = pads == self._same_pads(node.input[0], kernel, strides, [1, 1])
            if not same or (op == "AveragePool" and a.get("count_include_pad", 0)):
                raise _unsupported(node, f"uneven padding {pads}")
            return {"op": POOLS[op], "kernel": kernel, "stride": strides, "padding": "same"}
        pool = {"op": POOLS[op], "kernel": kernel, "stride": strides, "padding": pads[:2],
                "ceil_mode": bool(a.get("ceil_mode", 0))}
        return pool | ({"count_include_pad": bool(a.get("count_include_pad", 0))} if op == "AveragePool" else {})

    def _reduces_spatially(self, node, a: dict, layout: str) -> bool:
        """True for a ReduceMean or ReduceMax over H and W (axes an attribute before opset 18, an input after)."""
        axes = a.get("axes", self.constants.get(node.input[1]) if len(node.input) > 1 else None)
        return axes is not None and sorted(int(x) % 4 for x in np.ravel(axes)) == ([2, 3] if layout == "nchw" else [1, 2])

    def _resize(self, node, a: dict, value: Value) -> dict:
        """Resize by whole factors: nearest (any coordinate mode gives floor(i / factor) then), or bilinear."""
        scales = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        before, after = self.shapes.get(node.input[0]), self.shapes.get(node.output[0])
        if (scales is None or np.size(scales) == 0) and before and after and None not in before[2:] + after[2:]:
            scales = [1, 1, after[2] / before[2], after[3] / before[3]]
        factors = [float(v) for v in np.ravel(scales)[2:]] if scales is not None and np.size(scales) == 4 else []
        mode, coordinates = a.get("mode", b"nearest").decode(), a.get("coordinate_transformation_mode", b"half_pixel").decode()
        if len(factors) != 2 or any(f != int(f) or f < 1 for f in factors):
            raise _unsupported(node, f"scales {factors or 'computed in the graph'}; convlens resizes by whole factors")
        if mode == "nearest":
            return {"op": "upsample", "factor": [int(f) for f in factors], "mode": "nearest"}
        if mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            return {"op": "upsample", "factor": [int(f) for f in factors], "mode": "bilinear",
                    "align_corners": coordinates == "align_corners"}
        raise _unsupported(node, f"mode {mode} with {coordinates} coordinates")

    def _pad(self, node, a: dict, value: Value) -> dict:
        pads = self.constants.get(node.input[1]) if len(node.input) > 1 else a.get("pads")
        fill = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else a.get("value", 0.0)
        if pads is None or a.get("mode", b"constant") != b"constant" or float(np.ravel(fill)[0] if np.size(fill) else 0):
            raise _unsupported(node, "padding that is not zeros of a constant size")
        begin, end = [int(v) for v in np.ravel(pads)[:4]], [int(v) for v in np.ravel(pads)[4:]]
        h, w = (2, 3) if value.layout == "nchw" else (1, 2)
        if len(end) != 4 or any(begin[k] or end[k] for k in range(4) if k not in (h, w)):
            raise _unsupported(node, f"pads {begin + end}: only the height and width")
        return {"op": "pad", "pads": [begin[h], end[h], begin[w], end[w]]}

    def _flattens(self, node, op: str, a: dict, value: Value) -> bool:
        """True for a node that makes each image's values one vector."""
        if op == "Flatten":
            return a.get("axis", 1) == 1
        if op == "Squeeze":
            axes = a.get("axes", self.constants.get(node.input[1]) if len(node.input) > 1 else None)
            shape = self.shapes.get(node.input[0])
            return value.rank == 4 and axes is not None and shape is not None and \
                all(shape[int(x) % 4] == 1 for x in np.ravel(axes)) and len(np.ravel(axes)) == 2
        target = self._target(node)
        length = self.lengths.get(node.input[1])
        return value.rank in (2, 4) and ((target is not None and len(target) == 2) or length == 2)

    def _to_map_layout(self, node, op: str, a: dict) -> str | None:
        """Where a vector's features go when it becomes a (C, 1, 1) map: "nchw", "nhwc", or None for elsewhere."""
        if op == "Unsqueeze":
            axes = a.get("axes", self.constants.get(node.input[1]) if len(node.input) > 1 else None)
            axes = sorted(int(x) % 4 for x in np.ravel(axes)) if axes is not None else None
            return {(2, 3): "nchw", (1, 2): "nhwc"}.get(tuple(axes or ()))
        target = self._target(node)
        if target and len(target) == 4:
            return "nchw" if tuple(target[2:]) == (1, 1) else "nhwc" if tuple(target[1:3]) == (1, 1) else None
        return None

    def _to_map(self, node, op: str, a: dict) -> dict:
        layout = self._to_map_layout(node, op, a)
        features = (self.shapes.get(node.input[0]) or (None, None))[-1]
        if layout is None or not features:
            raise _unsupported(node, "a vector reshaped to anything but (C, 1, 1)")
        return {"op": "reshape", "shape": [int(features), 1, 1]}

    @staticmethod
    def _per_channel(constant, value: Value):
        return per_channel(constant, channels_last=value.rank == 2 or value.layout == "nhwc")

    def _arithmetic(self, node, op: str, name: str, value: Value) -> dict:
        """x + c, x - c, x * c, x / c and c + x, c - x, c * x: an affine node for one number, a scale for one per channel."""
        first_constant = node.input[0] in self.constants
        constant = self.constants.get(node.input[0 if first_constant else 1])
        numbers = self._per_channel(constant, value)
        if numbers is None or (first_constant and op == "Div") or (op == "Div" and not numbers.all()):
            raise _unsupported(node, "with a constant that is neither one number nor one per channel")
        ones, zeros = np.ones_like(numbers), np.zeros_like(numbers)
        scale, offset = {"Add": lambda: (ones, numbers), "Mul": lambda: (numbers, zeros), "Div": lambda: (1 / numbers, zeros),
                         "Sub": lambda: (-ones, numbers) if first_constant else (ones, -numbers)}[op]()
        if len(numbers) == 1:
            s = float(scale[0])
            if value.name == "input" and op in ("Mul", "Div") and any(math.isclose(s, r, rel_tol=1e-6) for r in RAW_PIXEL_SCALES):
                s *= 255.0  # the model rescales 0-255 pixels itself; convlens feeds pixels / 255 (as keras.py does)
            return {"op": "affine", "scale": s, "offset": float(offset[0])}
        self.tensors[f"{name}.weight"], self.tensors[f"{name}.bias"] = scale, offset
        return {"op": "scale", "features": len(numbers)}


def _channel_axes(value: Value) -> tuple[int, ...]:
    return (1, -1) if value.rank == 2 else (1, -3) if value.layout == "nchw" else (3, -1)


def _layer_name(node) -> str:
    """The module a node came from: the dynamo exporter's last module scope, the TorchScript exporter's path,
    or the Keras layer in a tf2onnx node's name (or, for a node tf2onnx named itself, in its output's)."""
    scopes = next((re.findall(r"'([^']*)'", p.value[:4096]) for p in node.metadata_props
                   if p.key == "pkg.torch.onnx.name_scopes"), [])
    if len(scopes) >= 2 and scopes[-2]:
        return scopes[-2]
    if not node.name.startswith("/"):  # tf2onnx: "model/layer/Op"
        for text in (node.name, node.output[0]):
            if "/" in text:
                return text.split("/")[-2]
        return node.name or node.op_type.lower()
    scopes = [p for p in node.name.split("/") if p][:-1]  # "/layer1/layer1.0/conv1/Conv": layer1.0.conv1
    path = ""
    for scope in scopes:  # a Sequential's children are scoped by their full path, other modules by attribute
        path = scope if not path or scope.startswith(path + ".") else f"{path}.{scope}"
    return path or node.name or node.op_type.lower()


def _unsupported(node, why: str = "") -> UserError:
    return UserError(f"operator {node.op_type} ('{node.name}'){' (' + why + ')' if why else ''} is not supported; "
                     f"convlens imports {', '.join(SUPPORTED)}")


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
    if op == "Pow":
        exponent = constants.get(node.input[1])
        if exponent is None or np.size(exponent) != 1:
            raise _unsupported(node, "an exponent that is not one number")
        return activation_spec("pow", float(np.ravel(exponent)[0]))
    return "gelu_tanh" if a.get("approximate", b"none") == b"tanh" else "gelu"
