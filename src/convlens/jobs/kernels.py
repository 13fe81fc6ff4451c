"""A conv layer's learned kernels as images; deeper layers as norms and their strongest slices: RUN/kernels/."""

from __future__ import annotations

from pathlib import Path

from ..draw import figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection import filters
from ..runs import Run, write_json
from . import Result, open_run, writes_into_run


@writes_into_run("kernels")
def kernels(run: Run | str | Path, layer: str | None = None, out: str | Path | None = None) -> Result:
    """Draw a conv layer's kernels (default: the first conv layer): every kernel when it reads the image or each
    channel on its own (a depthwise conv: one kernel per channel); else their norms and strongest slices."""
    run = open_run(run)
    if not run.layers.convs:
        raise UserError("the model has no conv layer, so it has no kernels to draw")
    layer = layer or run.layers.convs[0]
    run.layers.require(layer, "conv", "kernels exist for conv layers")
    weight, _ = filters.conv_weight(run.model, layer)
    norms = filters.kernel_norms(weight)
    depthwise = weight.shape[1] == 1 and layer != run.layers.convs[0]
    if depthwise or (weight.shape[1] in (1, 3) and layer == run.layers.convs[0]):
        fig = views.first_kernels_figure(weight, layer, depthwise)
    else:
        fig = views.deep_kernels_figure(weight, norms, layer)
    folder = run.output_folder("kernels", out)
    data = {"layer": layer, "shape": list(weight.shape), "depthwise": depthwise, "norms": norms.tolist()}
    write_json(folder / f"kernels_{layer}.json", data)
    return Result([figures.save(fig, folder / f"kernels_{layer}.png"), folder / f"kernels_{layer}.json"], data)
