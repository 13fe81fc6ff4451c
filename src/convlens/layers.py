"""The layer table: every inspectable layer of a model, worked out once by one forward pass and kept on the model.

Each row says what a feature needs to know about a layer: its name (as `named_modules()` spells it),
its kind, output shape, parameter count, the receptive field of one unit on the input, and which
module's output is its pre-activation. Every command that walks layers (summary, maps, top crops,
OIPs, compare, sanity checks, the live page) reads this table; none pushes its own dummy tensor.

Which modules are layers: for convlens's own nets, the top-level blocks (conv1 is the map after
its ReLU, as Keras shows it); for any other module, its Conv2d, pooling, Flatten and Linear
modules, in the order the forward pass runs them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
from torch import nn

from .errors import UserError

WINDOW_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
TABLE_ATTRIBUTE = "_convlens_layer_table"  # where the table is kept on the model


class Block(nn.Sequential):
    """A conv or dense layer with its optional batch norm and activation, addressed by one name."""


@dataclass(frozen=True)
class Field:
    """The receptive field of one unit on the input: a square of `size` pixels."""

    size: int  # side in input pixels of the square one output unit sees
    jump: int  # input pixels between neighbouring output units (effective stride); 0 once flattened
    offset: int  # input row/column where the field of unit 0 starts; negative with padding

    def then(self, kernel: int, stride: int, padding: int) -> "Field":
        """Return the field after one more sliding window.

        The field grows by (kernel - 1) * jump, the jump multiplies by the stride, and padding moves
        the start of unit 0's field back by padding * jump.
        """
        return Field(self.size + (kernel - 1) * self.jump, self.jump * stride, self.offset - padding * self.jump)

    def join(self, other: "Field") -> "Field":
        """Return the field of a unit that sees both fields (a residual sum, a concatenation): their union."""
        start, end = min(self.offset, other.offset), max(self.offset + self.size, other.offset + other.size)
        return Field(end - start, max(self.jump, other.jump), start)

    def box(self, row: int, col: int, image_size: int) -> tuple[int, int, int, int]:
        """Return (top, left, bottom, right), exclusive, of the input pixels one map position sees, clipped to the image."""
        top, left = self.offset + row * self.jump, self.offset + col * self.jump
        clip = lambda v: max(0, min(image_size, v))  # noqa: E731
        return clip(top), clip(left), clip(top + self.size), clip(left + self.size)


@dataclass(frozen=True)
class Layer:
    name: str  # as named_modules() spells it: conv1, features.0, ...
    kind: str  # conv | pool | dense | logits | flatten | dropout | other
    type: str  # the module types it holds, e.g. Conv2d+BatchNorm2d+ReLU
    output_shape: tuple[int, ...]  # (C, H, W) for maps, (N,) for vectors
    params: int
    field: Field
    pre_activation: str | None  # module whose output is this layer's value before its activation; None if the same
    inputs: tuple[str, ...] = ()  # the layers whose outputs it reads ("input": the image), as the forward pass ran

    @property
    def is_map(self) -> bool:
        """Whether the output is feature maps (C, H, W)."""
        return len(self.output_shape) == 3

    @property
    def channels(self) -> int:
        return self.output_shape[0]


@dataclass(frozen=True)
class LayerTable:
    input_shape: tuple[int, int, int]  # (C, H, W) of one input image
    layers: tuple[Layer, ...]

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise UserError(f"unknown layer '{name}'; layers are: {', '.join(self.names())}")

    def names(self, *kinds: str) -> list[str]:
        """Return the layer names, in forward order; only those of the given kinds if any are named."""
        return [layer.name for layer in self.layers if not kinds or layer.kind in kinds]

    @property
    def map_layers(self) -> list[str]:
        """The layers whose outputs are feature maps (C, H, W): conv and pooling layers."""
        return [layer.name for layer in self.layers if layer.is_map and layer.kind in ("conv", "pool")]

    @property
    def convs(self) -> list[str]:
        return self.names("conv")

    @property
    def weighted(self) -> list[str]:
        """The layers that hold weights, in forward order."""
        return [layer.name for layer in self.layers if layer.params]

    def require(self, name: str, kind: str, purpose: str) -> Layer:
        """Return the layer if it is of `kind`; else a UserError saying `purpose` and the layers that would do."""
        fitting = self.names(kind)
        if name not in fitting:
            raise UserError(f"{purpose}; '{name}' is not one of {', '.join(fitting) or 'none: the model has no ' + kind}")
        return self[name]

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)


def window(module: nn.Module) -> tuple[int, int, int] | None:
    """Return (kernel, stride, padding) of a module that slides a square window, else None.

    A dilated kernel spans (kernel - 1) * dilation + 1 pixels; zero padding on its own is a 1x1 window
    that moves the field's start.
    """
    if isinstance(module, nn.ZeroPad2d):
        return 1, 1, module.padding[2]  # (left, right, top, bottom): the rows', as for a conv's (rows, cols)
    if not isinstance(module, WINDOW_TYPES):
        return None
    first = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731 - square windows only
    k, s, p = first(module.kernel_size), first(module.stride), module.padding
    k = (k - 1) * first(getattr(module, "dilation", 1)) + 1
    if p == "same":  # PyTorch pads (k-1)//2 before and the rest after
        p = (k - 1) // 2
    p = getattr(module, "pad_before", p)  # TensorFlow-style 'same' padding, as the last input needed it
    return k, s, first(p)


def kind_of(name: str, module: nn.Module) -> str:
    """Return the kind of a layer module: conv, pool, dense, logits, flatten, dropout or other."""
    inner = dict(module.named_children()) if isinstance(module, Block) else {}
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    if isinstance(module, convs) or isinstance(inner.get("conv"), convs):
        return "conv"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    if name == "logits":
        return "logits"
    if isinstance(module, nn.Linear) or isinstance(inner.get("linear"), nn.Linear):
        return "dense"
    if isinstance(module, nn.Flatten):
        return "flatten"
    if isinstance(module, nn.Dropout):
        return "dropout"
    return "other"


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    """Return the modules that count as layers: convlens blocks at the top, or the usual layer modules anywhere."""
    children = dict(model.named_children())
    if any(isinstance(m, Block) for m in children.values()):
        return children
    kinds = (*WINDOW_TYPES, nn.Linear, nn.Flatten)
    return {n: m for n, m in model.named_modules() if n and isinstance(m, kinds)}


def _pre_activation(name: str, module: nn.Module) -> str | None:
    if not isinstance(module, Block):
        return None
    parts = dict(module.named_children())
    inner = "bn" if "bn" in parts else ("conv" if "conv" in parts else "linear")
    has_activation = "act" in parts and not isinstance(parts["act"], nn.Identity)
    return f"{name}.{inner}" if has_activation else None


def _type_name(module: nn.Module) -> str:
    if isinstance(module, Block):  # an Identity activation is no activation
        return "+".join(type(m).__name__ for m in module.children() if not isinstance(m, nn.Identity))
    return type(module).__name__


@torch.no_grad()
def build_table(model: nn.Module, input_shape: tuple[int, int, int]) -> LayerTable:
    """Return the layer table of a model for inputs of shape (C, H, W), from one forward pass of a blank image.

    Receptive fields follow the values: a layer starts from the union of the fields of the values it
    reads (both branches of a residual sum, every part of a concatenation), then composes the sliding
    windows inside it. That is exact wherever values pass from layer to layer, as in imported graphs
    and convlens's nets; a value made outside any layer (a `+` in a model's own forward) is taken to
    have the field of the last layer that ran.
    """
    candidates = _candidates(model)
    names = {id(m): n for n, m in candidates.items()}
    rows: list[Layer] = []
    state = {"field": Field(1, 1, 0), "last": "input", "inputs": ()}
    # id of a layer's output -> (the output, kept alive; its field; the layer that made it)
    fields: dict[int, tuple[torch.Tensor, Field, str]] = {}

    def field_of(value) -> Field:
        return fields[id(value)][1] if id(value) in fields else state["field"]

    def on_layer_input(_module, inputs):
        values = [v for v in inputs if isinstance(v, torch.Tensor)]
        if values:
            state["field"] = functools.reduce(Field.join, map(field_of, values))
            # a value made outside any layer comes from the last layer that ran, as its field does
            state["inputs"] = tuple(dict.fromkeys(fields[id(v)][2] if id(v) in fields else state["last"] for v in values))

    def on_window(module, _inputs, _output):
        state["field"] = state["field"].then(*window(module))

    def on_layer(module, inputs, output):
        name, field = names[id(module)], state["field"]
        x_in = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if x_in is not None and x_in.dim() == 4 and output.dim() == 2 and field.jump:
            # Flattened: the union of the fields of all positions of the last map, clipped to the image,
            # since with same padding the nominal field reaches into the zero border.
            field = Field(min(field.size + (x_in.shape[-1] - 1) * field.jump, input_shape[-1]), 0, max(field.offset, 0))
            state["field"] = field
        fields[id(output)] = (output, field, name)
        rows.append(Layer(name, kind_of(name, module), _type_name(module), tuple(output.shape[1:]),
                          sum(p.numel() for p in module.parameters()), field, _pre_activation(name, module),
                          state["inputs"]))
        state["last"] = name

    handles = [m.register_forward_pre_hook(on_layer_input) for m in candidates.values()]
    handles += [m.register_forward_hook(on_window) for m in model.modules() if window(m)]
    handles += [m.register_forward_hook(on_layer) for m in candidates.values()]  # after: a block's conv runs first
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters(), torch.zeros(())).device
        image = torch.zeros(1, *input_shape, device=device)
        fields[id(image)] = (image, Field(1, 1, 0), "input")
        model(image)
    except RuntimeError as e:
        raise UserError(f"the model does not take inputs of shape {tuple(input_shape)}: {str(e).splitlines()[0]}") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if rows and rows[-1].kind == "dense" and not any(r.kind == "logits" for r in rows):
        rows[-1] = replace(rows[-1], kind="logits")  # the last dense layer of any model is its logits
    return LayerTable(tuple(input_shape), tuple(rows))


def layer_table(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> LayerTable:
    """Return the model's layer table, computed on first use and kept on the model.

    The input shape comes from the model when it records one (`input_shape`, as convlens nets and
    imported models do), else from the caller (usually the data set's image shape).
    """
    shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
    if len(shape) != 3:
        raise UserError("the model does not record its input shape; give input_shape=(channels, height, width)")
    table = model.__dict__.get(TABLE_ATTRIBUTE)
    if table is None or table.input_shape != shape:
        table = build_table(model, shape)
        model.__dict__[TABLE_ATTRIBUTE] = table  # a plain attribute: not a parameter, not in the state dict
    return table
