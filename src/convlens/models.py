"""Layer specs and model building (the presets, spec strings by name, live in config.py).

A spec is a compact string such as `conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense10`.
Layers get the names the articles use (conv1, pool1, ..., flatten, dense1, ..., logits), so
inspection can address them through `named_modules()`. A conv or hidden dense layer is one named
block holding its convolution, optional batch norm and activation: `conv1` is the map after the
ReLU, as in Keras, and `conv1.conv` the pre-activation.

A spec is planned from its arithmetic alone (`plan_spec`: shapes, parameters, limits) before any
module is allocated; the built model records its input shape, and the layer table (layers.py)
describes it from then on.
"""

from __future__ import annotations

import difflib

import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .config import MNIST_SHAPE, PRESETS
from .errors import UserError
from .layers import Block

ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "tanh": nn.Tanh, "none": nn.Identity}

_CONV = re.compile(r"conv(?P<filters>\d+)k(?P<kernel>\d+)(?P<mods>[a-z0-9]*)")
_DENSE = re.compile(r"dense(?P<units>\d+)(?P<mods>[a-z]*)")
_POOL = re.compile(r"(?P<kind>max|avg)?pool(?P<size>\d+)")
_DROPOUT = re.compile(r"dropout(?P<p>0?\.\d+)")
_MOD = re.compile(r"s\d+|same|valid|bn|relu|selu|tanh|none")

SPEC_HELP = (
    "layers joined by '-': conv<filters>k<kernel>[s<stride>][same|valid][bn][relu|selu|tanh|none], "
    "pool<n>, avgpool<n>, dropout<p>, flatten, dense<units>[bn][activation]; the last dense is the logits"
)

# Limits checked on the spec's arithmetic before anything is allocated: a typo such as dense1000000
# after a flatten would otherwise ask for tens of GB at once.
MAX_SPEC_CHARS, MAX_LAYERS = 1000, 64
MAX_WIDTH = 16384  # filters or units of one layer
MAX_PARAMS = 50_000_000  # 200 MB of fp32 weights, 4x again with gradients and optimizer state
MAX_ACTIVATIONS = 4_000_000  # values per image in one layer's output: 2 GB for a batch of 128


class SpecNet(nn.Sequential):
    """A sequential network built from a layer spec; `spec` and `input_shape` record how to rebuild it."""

    def __init__(self, layers: OrderedDict, spec: str, input_shape: tuple[int, int, int]):
        super().__init__(layers)
        self.spec = spec
        self.input_shape = tuple(input_shape)


class Flatten(nn.Flatten):
    """nn.Flatten (channel-major order, whatever the layout) whose gradient keeps a channels-last input's layout.

    The gradient of a flatten is a plain NCHW tensor; the max-pool before it, run channels-last,
    then copied its input and indices to NCHW in every backward pass: 0.9 of 4.2 s of a profiled
    `fast` epoch (bench/epoch_profile.py). Handing the gradient back channels-last costs one copy
    of the smaller pooled gradient instead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.requires_grad and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return _FlattenKeepingLayout.apply(x)
        return super().forward(x)


class _FlattenKeepingLayout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


def resolve_spec(model: str) -> str:
    """Return the layer spec of a preset name, or the spec itself."""
    if model not in PRESETS and "-" not in model:
        close = difflib.get_close_matches(model, PRESETS, n=1, cutoff=0.8)  # simpel: simple; resnet50 is no lenet5
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown model '{model}'; {hint}use a preset ({', '.join(PRESETS)}) or a layer spec: {SPEC_HELP}")
    return PRESETS.get(model, model)


def _mods(text: str, token: str) -> dict:
    found = _MOD.findall(text)
    if "".join(found) != text:
        raise UserError(f"layer '{token}' has unknown options '{text}'; spec syntax: {SPEC_HELP}")
    mods = {"stride": 1, "padding": "valid", "bn": False, "act": "relu"}
    for m in found:
        if m.startswith("s") and m[1:].isdigit():
            mods["stride"] = int(m[1:])
        elif m in ("same", "valid"):
            mods["padding"] = m
        elif m == "bn":
            mods["bn"] = True
        else:
            mods["act"] = m
    return mods


@dataclass(frozen=True)
class PlannedLayer:
    name: str  # conv1, pool1, flatten, dropout1, dense1, logits
    kind: str  # conv | pool | flatten | dropout | dense | logits
    in_shape: tuple[int, ...]  # (C, H, W) or (F,)
    out_shape: tuple[int, ...]
    params: int
    options: dict  # what building the module needs: filters, kernel, stride, padding, bn, act, units, p, size, avg


def _plan_token(token: str, shape: tuple[int, ...], last: bool, num_classes: int) -> tuple[str, tuple[int, ...], int, dict]:
    """Return (kind, output shape, parameters, options) of one spec token reached by inputs of `shape`."""
    image = len(shape) == 3
    if m := _CONV.fullmatch(token):
        if not image:
            raise UserError(f"'{token}' comes after flatten; convolutions need an image")
        o = _mods(m["mods"], token) | {"filters": int(m["filters"]), "kernel": int(m["kernel"])}
        if o["padding"] == "same" and o["stride"] != 1:
            raise UserError(f"'{token}': same padding needs stride 1")
        c, h, w = shape
        k, s = o["kernel"], o["stride"]
        h, w = (h, w) if o["padding"] == "same" else ((h - k) // s + 1, (w - k) // s + 1)
        return "conv", (o["filters"], h, w), (c * k * k + 1) * o["filters"] + 2 * o["filters"] * o["bn"], o
    if m := _POOL.fullmatch(token):
        if not image:
            raise UserError(f"'{token}' comes after flatten; pooling needs an image")
        size = int(m["size"])
        return "pool", (shape[0], shape[1] // size, shape[2] // size), 0, {"size": size, "avg": m["kind"] == "avg"}
    if token == "flatten":
        return "flatten", (shape[0] * shape[1] * shape[2],) if image else shape, 0, {}
    if m := _DROPOUT.fullmatch(token):
        return "dropout", shape, 0, {"p": float(m["p"])}
    if m := _DENSE.fullmatch(token):
        if image:
            raise UserError(f"'{token}' needs a flatten layer before it")
        units = int(m["units"])
        if last:
            if units != num_classes or m["mods"]:
                raise UserError(f"the last layer '{token}' must be dense{num_classes}: one logit per class")
            return "logits", (units,), (shape[0] + 1) * units, {"units": units}
        o = _mods(m["mods"], token) | {"units": units}
        return "dense", (units,), (shape[0] + 1) * units + 2 * units * o["bn"], o
    raise UserError(f"cannot parse layer '{token}'; syntax: {SPEC_HELP}")


def plan_spec(spec: str, num_classes: int = 10, input_shape: tuple[int, int, int] = MNIST_SHAPE) -> list[PlannedLayer]:
    """Return every layer of a spec with its shapes and parameters, from arithmetic alone; absurd specs are a UserError."""
    if len(spec) > MAX_SPEC_CHARS or spec.count("-") >= MAX_LAYERS:
        raise UserError(f"the spec is too long: at most {MAX_LAYERS} layers and {MAX_SPEC_CHARS} characters")
    tokens = spec.split("-")
    if not tokens[-1].startswith("dense"):
        raise UserError(f"spec '{spec}' must end with a dense layer (the logits); syntax: {SPEC_HELP}")
    shape, params, counts, planned = tuple(input_shape), 0, {}, []
    size = "x".join(map(str, input_shape[1:]))
    for i, token in enumerate(tokens):
        numbers = [int(n) for n in re.findall(r"\d+", token.split(".")[0])]
        if any(n > MAX_WIDTH for n in numbers) or (0 in numbers and not token.startswith("dropout")):
            raise UserError(f"layer '{token}' has a size of 0 or above {MAX_WIDTH:,}; widths and kernels must be 1-{MAX_WIDTH:,}")
        kind, out, layer_params, options = _plan_token(token, shape, i == len(tokens) - 1, num_classes)
        if min(out) < 1:
            raise UserError(f"layer '{token}' reduces the {size} input to nothing; use fewer or smaller "
                            "convolutions and pools, or same padding")
        values = 1
        for d in out:
            values *= d
        if values > MAX_ACTIVATIONS:
            raise UserError(f"layer '{token}' would output more than {MAX_ACTIVATIONS:,} values per image")
        params += layer_params
        if params > MAX_PARAMS:
            raise UserError(f"the spec needs more than {MAX_PARAMS:,} parameters by layer '{token}'; "
                            f"a network for {size} images needs far fewer")
        counts[kind] = counts.get(kind, 0) + 1
        name = kind if kind in ("flatten", "logits") else f"{kind}{counts[kind]}"
        planned.append(PlannedLayer(name, kind, shape, out, layer_params, options))
        shape = out
    return planned


def check_spec(spec: str, num_classes: int = 10, input_shape: tuple[int, int, int] = MNIST_SHAPE) -> int:
    """Return the parameter count of a spec, or raise UserError if it is absurd, before anything is built."""
    return sum(layer.params for layer in plan_spec(spec, num_classes, input_shape))


def _module(layer: PlannedLayer) -> nn.Module:
    o = layer.options
    if layer.kind == "conv":
        padding = "same" if o["padding"] == "same" else 0
        parts = [("conv", nn.Conv2d(layer.in_shape[0], o["filters"], o["kernel"], o["stride"], padding))]
        if o["bn"]:
            parts.append(("bn", nn.BatchNorm2d(o["filters"])))
        return Block(OrderedDict(parts + [("act", ACTIVATIONS[o["act"]]())]))
    if layer.kind == "pool":
        return nn.AvgPool2d(o["size"]) if o["avg"] else nn.MaxPool2d(o["size"])
    if layer.kind == "flatten":
        return Flatten()
    if layer.kind == "dropout":
        return nn.Dropout(o["p"])
    if layer.kind == "logits":
        return nn.Linear(layer.in_shape[0], o["units"])
    parts = [("linear", nn.Linear(layer.in_shape[0], o["units"]))]
    if o["bn"]:
        parts.append(("bn", nn.BatchNorm1d(o["units"])))
    return Block(OrderedDict(parts + [("act", ACTIVATIONS[o["act"]]())]))


def build_model(spec: str = "simple", num_classes: int = 10, input_shape: tuple[int, int, int] = MNIST_SHAPE) -> SpecNet:
    """Return a freshly initialised network for a preset name or a layer spec, for images of `input_shape` (C, H, W)."""
    spec = resolve_spec(spec)
    planned = plan_spec(spec, num_classes, input_shape)
    return SpecNet(OrderedDict((layer.name, _module(layer)) for layer in planned), spec, input_shape).train()


def count_params(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
