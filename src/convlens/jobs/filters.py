"""Classic hand-set kernels (Sobel, blur, ...) beside the learned first-layer kernels on one image: RUN/filters/."""

from __future__ import annotations

from pathlib import Path

from ..draw import figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection import filters
from ..runs import Run
from . import Result, open_run, writes_into_run


@writes_into_run("filters")
def filters_demo(run: Run | str | Path, index: int = 0, out: str | Path | None = None) -> Result:
    """Apply the classic kernels and the first conv layer's kernels to one test image, side by side."""
    run = open_run(run)
    run.check_test_index(index)
    if not run.layers.convs:
        raise UserError("the model has no conv layer to set beside the classic filters")
    first = run.layers.convs[0]
    weight, _ = filters.conv_weight(run.model, first)
    if weight.shape[1] != 1:
        raise UserError(f"{first} reads {weight.shape[1]} channels; the classic filters are grey, so the demo "
                        "needs a conv on a grey image")
    image = run.test_inputs[index : index + 1]
    classic = filters.classic_kernels()
    fig = views.filters_demo_figure(image[0, 0], list(filters.CLASSIC_KERNELS), classic,
                                    filters.apply_kernels(image, classic), weight, filters.apply_kernels(image, weight))
    return Result([figures.save(fig, run.output_folder("filters", out) / f"filters_demo_{index}.png")])
