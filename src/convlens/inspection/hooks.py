"""capture(): record layer outputs by name with forward hooks that never outlive the block."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import UserError


def resolve_layers(model: nn.Module, names: list[str] | tuple[str, ...]) -> dict[str, nn.Module]:
    """Return the named modules; an unknown name is a UserError listing the names there are."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        known = ", ".join(n for n in modules if n and "." not in n) or ", ".join(n for n in modules if n)
        raise UserError(f"unknown layer {', '.join(map(repr, unknown))}; layers are: {known}")
    return {n: modules[n] for n in names}


@contextmanager
def capture(model: nn.Module, layer_names, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that fills with each named layer's output on every forward pass inside the block.

    Hooks are removed in `finally`, so an exception inside the block leaves the model clean.
    """
    layers = resolve_layers(model, list(layer_names))
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, module in layers.items():
            def hook(_module, _inputs, output, name=name):
                outputs[name] = output.detach() if detach else output

            handles.append(module.register_forward_hook(hook))
        yield outputs
    finally:
        for h in handles:
            h.remove()


def layer_module(model: nn.Module, name: str) -> nn.Module:
    """Return one named module, or raise UserError listing the names there are."""
    return resolve_layers(model, [name])[name]


class _Reached(Exception):
    """Raised by a hook to skip the rest of a forward pass once the wanted layer has run."""


def forward_until(model: nn.Module, x: torch.Tensor, names, stop_at: str) -> dict[str, torch.Tensor]:
    """Return the outputs of the named modules, with their graphs, running the model only up to `stop_at`.

    OIP searches on conv1 need a tenth of the network; stopping early is what makes them cheap.
    """
    stop = layer_module(model, stop_at)

    def halt(_module, _inputs, _output):
        raise _Reached

    with capture(model, names, detach=False) as outputs:  # registered first, so it records before halt
        handle = stop.register_forward_hook(halt)
        try:
            model(x)
        except _Reached:
            pass
        finally:
            handle.remove()
    return outputs
