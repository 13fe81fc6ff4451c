"""Layer specs, the preset registry, model building and the layer summary.

A spec is a compact string such as `conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense10`.
Layers get the names the articles use (conv1, pool1, ..., flatten, dense1, ..., logits), so
inspection can address them through `named_modules()`. A conv or hidden dense layer is one named
block holding its convolution, optional batch norm and activation: `conv1` is the map after the
ReLU, as in Keras, and `conv1.conv` the pre-activation.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UserError

PRESETS: dict[str, str] = {
    # The convnet of the articles: 104,202 parameters, conv3 outputs 3x3x128.
    "simple": "conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense10",
    # simple plus a hidden dense layer: the "MLP part" whose role the articles discuss.
    "simple-mlp": "conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense64-dense10",
    # Keras' MNIST example style: same padding, Dense 64, Dropout 0.5; 220,234 parameters.
    "same-pad": "conv32k3same-pool2-conv64k3same-pool2-flatten-dense64-dropout0.5-dense10",
    # The TensorFlow tutorial net: 5x5 convs, Dense 1024; 3,274,634 parameters.
    "deep5x5": "conv32k5same-pool2-conv64k5same-pool2-flatten-dense1024-dropout0.4-dense10",
    # Dense-only baseline for "CNN 99.1% vs dense 97.8%": 101,770 parameters.
    "mlp": "flatten-dense128-dense10",
    # Speed first: a strided 5x5 first conv does a third of simple's work; 99% in two epochs.
    "fast": "conv16k5s2bn-conv32k3bn-pool2-flatten-dense10",
    # Accuracy first (the best-* recipes): VGG-style pairs of 3x3 convs with batch norm.
    "vgg-mnist": "conv32k3bn-conv32k3bn-pool2-conv64k3bn-conv64k3bn-pool2-flatten-dense10",
    "vgg-fashion": "conv32k3samebn-conv32k3samebn-pool2-conv64k3samebn-conv64k3samebn-pool2-conv128k3samebn-conv128k3bn"
                   "-flatten-dropout0.3-dense10",
    # LeCun et al. 1998 on 28x28 input (padding 2 in the first conv), average pooling, tanh.
    "lenet5": "conv6k5sametanh-avgpool2-conv16k5tanh-avgpool2-flatten-dense120tanh-dense84tanh-dense10",
}

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


class Block(nn.Sequential):
    """A conv or dense layer with its optional batch norm and activation, addressed by one name."""


class SpecNet(nn.Sequential):
    """A sequential network built from a layer spec; `spec` records how to rebuild it."""

    def __init__(self, layers: OrderedDict, spec: str):
        super().__init__(layers)
        self.spec = spec


def resolve_spec(model: str) -> str:
    """Return the layer spec of a preset name, or the spec itself."""
    if model not in PRESETS and "-" not in model:
        raise UserError(f"unknown model '{model}'; use a preset ({', '.join(PRESETS)}) or a layer spec: {SPEC_HELP}")
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


# Limits checked on the spec's arithmetic before anything is allocated: a typo such as dense1000000
# after a flatten would otherwise ask for tens of GB at once.
MAX_SPEC_CHARS, MAX_LAYERS = 1000, 64
MAX_WIDTH = 16384  # filters or units of one layer
MAX_PARAMS = 50_000_000  # 200 MB of fp32 weights, 4x again with gradients and optimizer state
MAX_ACTIVATIONS = 4_000_000  # values per image in one layer's output: 2 GB for a batch of 128


def check_spec(spec: str, num_classes: int = 10, in_channels: int = 1, size: int = 28) -> int:
    """Return the parameter count of a spec, or raise UserError if it is absurd, before anything is built."""
    if len(spec) > MAX_SPEC_CHARS or spec.count("-") >= MAX_LAYERS:
        raise UserError(f"the spec is too long: at most {MAX_LAYERS} layers and {MAX_SPEC_CHARS} characters")
    channels, height, features, params = in_channels, size, None, 0
    for token in spec.split("-"):
        numbers = [int(n) for n in re.findall(r"\d+", token.split(".")[0])]
        if any(n > MAX_WIDTH for n in numbers) or (0 in numbers and not token.startswith("dropout")):
            raise UserError(f"layer '{token}' has a size of 0 or above {MAX_WIDTH:,}; widths and kernels must be 1-{MAX_WIDTH:,}")
        if (m := _CONV.fullmatch(token)) and features is None:
            k, stride = int(m["kernel"]), int((re.search(r"s(\d+)", m["mods"]) or [0, 1])[1])
            height = height if "same" in m["mods"] else (height - k) // max(stride, 1) + 1
            params += (channels * k * k + 1) * int(m["filters"])
            channels = int(m["filters"])
        elif (m := _POOL.fullmatch(token)) and features is None:
            height //= int(m["size"])
        elif token == "flatten" and features is None:
            features = channels * height * height
        elif (m := _DENSE.fullmatch(token)) and features is not None:
            params += (features + 1) * int(m["units"])
            features = int(m["units"])
        if height < 1:
            raise UserError(f"layer '{token}' reduces the {size}x{size} input to nothing; use fewer or smaller "
                            "convolutions and pools, or same padding")
        if (features if features is not None else channels * height * height) > MAX_ACTIVATIONS:
            raise UserError(f"layer '{token}' would output more than {MAX_ACTIVATIONS:,} values per image")
        if params > MAX_PARAMS:
            raise UserError(f"the spec needs more than {MAX_PARAMS:,} parameters by layer '{token}'; "
                            "a network for 28x28 images needs far fewer")
    return params


def build_model(model: str = "simple", num_classes: int = 10, in_channels: int = 1) -> SpecNet:
    """Return a freshly initialised network for a preset name or a layer spec."""
    spec = resolve_spec(model)
    check_spec(spec, num_classes, in_channels)
    tokens = spec.split("-")
    if not tokens[-1].startswith("dense"):
        raise UserError(f"spec '{spec}' must end with a dense layer (the logits); syntax: {SPEC_HELP}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    counts: dict[str, int] = {}
    x = torch.zeros(1, in_channels, 28, 28)  # a probe pushed through each new layer to learn its input shape
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        kind, layer = _make_layer(token, x, num_classes if last else None)
        counts[kind] = counts.get(kind, 0) + 1
        lname = "logits" if last else ("flatten" if kind == "flatten" else f"{kind}{counts[kind]}")
        try:
            with torch.no_grad():
                x = layer.eval()(x)
        except RuntimeError:
            raise UserError(f"layer {lname} of '{spec}' does not fit its input of shape {tuple(x.shape[1:])}") from None
        layers[lname] = layer
    return SpecNet(layers, spec).train()


def _make_layer(token: str, x: torch.Tensor, logits_units: int | None) -> tuple[str, nn.Module]:
    """Return (kind, module) for one spec token, given the probe tensor x that will reach it."""
    image = x.dim() == 4
    if m := _CONV.fullmatch(token):
        if not image:
            raise UserError(f"'{token}' comes after flatten; convolutions need an image")
        o = _mods(m["mods"], token)
        if o["padding"] == "same" and o["stride"] != 1:
            raise UserError(f"'{token}': same padding needs stride 1")
        padding = "same" if o["padding"] == "same" else 0
        parts = [("conv", nn.Conv2d(x.shape[1], int(m["filters"]), int(m["kernel"]), o["stride"], padding))]
        if o["bn"]:
            parts.append(("bn", nn.BatchNorm2d(int(m["filters"]))))
        parts.append(("act", ACTIVATIONS[o["act"]]()))
        return "conv", Block(OrderedDict(parts))
    if m := _POOL.fullmatch(token):
        if not image:
            raise UserError(f"'{token}' comes after flatten; pooling needs an image")
        size = int(m["size"])
        return "pool", nn.AvgPool2d(size) if m["kind"] == "avg" else nn.MaxPool2d(size)
    if token == "flatten":
        return "flatten", nn.Flatten()
    if m := _DROPOUT.fullmatch(token):
        return "dropout", nn.Dropout(float(m["p"]))
    if m := _DENSE.fullmatch(token):
        if image:
            raise UserError(f"'{token}' needs a flatten layer before it")
        units = int(m["units"])
        if logits_units is not None:
            if units != logits_units or m["mods"]:
                raise UserError(f"the last layer '{token}' must be dense{logits_units}: one logit per class")
            return "logits", nn.Linear(x.shape[1], units)
        o = _mods(m["mods"], token)
        parts = [("linear", nn.Linear(x.shape[1], units))]
        if o["bn"]:
            parts.append(("bn", nn.BatchNorm1d(units)))
        parts.append(("act", ACTIVATIONS[o["act"]]()))
        return "dense", Block(OrderedDict(parts))
    raise UserError(f"cannot parse layer '{token}'; syntax: {SPEC_HELP}")


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # (C, H, W) for maps, (N,) for vectors
    params: int
    receptive_field: int  # side in input pixels of the square one output unit sees
    jump: int  # input pixels between neighbouring output units (effective stride); 0 once flattened
    offset: int  # input row/column where the field of output unit 0 starts; negative with padding


WINDOW_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def window(module: nn.Module) -> tuple[int, int, int] | None:
    """Return (kernel, stride, padding) of a module that slides a square window, else None."""
    if not isinstance(module, WINDOW_TYPES):
        return None
    first = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731 - square windows only
    k, s, p = first(module.kernel_size), first(module.stride), module.padding
    if p == "same":  # PyTorch pads (k-1)//2 before and the rest after
        p = (k - 1) // 2
    return k, s, first(p)


def extend_field(field: tuple[int, int, int], win: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return the (size, jump, offset) receptive field after one more window (kernel, stride, padding).

    The field grows by (kernel - 1) * jump, the jump multiplies by the stride, and padding moves
    the start of unit 0's field back by padding * jump.
    """
    size, jump, offset = field
    k, s, p = win
    return size + (k - 1) * jump, jump * s, offset - p * jump


def summary(model: nn.Module, input_shape: tuple[int, int, int] = (1, 28, 28)) -> list[LayerRow]:
    """Return one row per top-level layer: output shape, parameters and receptive field on the input.

    Once flattened, a unit sees every input pixel any position of the last map saw.
    """
    rows: list[LayerRow] = []
    x = torch.zeros(1, *input_shape)
    rf, jump, offset = 1, 1, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for lname, layer in model.named_children():
            x_in, x = x, layer(x)
            for win in filter(None, map(window, layer.modules())):  # a conv block holds its conv
                rf, jump, offset = extend_field((rf, jump, offset), win)
            if x_in.dim() == 4 and x.dim() == 2:
                # Flatten: the union of the fields of all positions of the last map, clipped to the
                # image, since with same padding the nominal field reaches into the zero border.
                rf, jump, offset = min(rf + (x_in.shape[-1] - 1) * jump, input_shape[-1]), 0, max(offset, 0)
            rows.append(
                LayerRow(
                    name=lname,
                    type=_type_name(layer),
                    output_shape=tuple(x.shape[1:]),
                    params=sum(p.numel() for p in layer.parameters()),
                    receptive_field=rf,
                    jump=jump,
                    offset=offset,
                )
            )
    model.train(was_training)
    return rows


def _type_name(layer: nn.Module) -> str:
    if isinstance(layer, Block):
        return "+".join(type(m).__name__ for m in layer.children())
    return type(layer).__name__


def count_params(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
