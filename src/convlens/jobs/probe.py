"""Probes: how well the class can be read off each layer, by a linear probe and nearest centroids: RUN/probe/."""

from __future__ import annotations

from pathlib import Path

import torch

from ..draw import figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection.probe import probe as fit_probes
from ..runs import Run, write_json
from ..speed import images_to_device
from ..training import evaluate
from . import Result, open_run, writes_into_run


@writes_into_run("probe")
def probe(run: Run | str | Path, layers: list[str] | None = None, train_size: int = 10000,
          out: str | Path | None = None, log=print) -> Result:
    """Fit linear and nearest-centroid probes on each layer (default: every layer but dropout)."""
    run = open_run(run)
    layers = layers or [layer.name for layer in run.layers if layer.kind != "dropout"]
    for layer in layers:
        run.layers[layer]  # noqa: B018 - an unknown name is an error that lists the layers
    available = len(run.dataset.train_labels)
    if not 1 <= train_size <= available:
        raise UserError(f"the probes' training size must be between 1 and {available}")
    train_x = images_to_device(run.dataset.train_images[:train_size], torch.device("cpu"))
    result = fit_probes(run.model, train_x, run.dataset.train_labels[:train_size], run.test_inputs, run.test_labels,
                        layers, len(run.class_names), log=log)
    accuracy = evaluate(run.model, run.test_images, run.test_labels)["accuracy"]
    folder = run.output_folder("probe", out)
    data = {"train_size": train_size, "model_accuracy": accuracy, "layers": result}
    write_json(folder / "probe.json", data)
    return Result([figures.save(views.probe_figure(result, accuracy), folder / "probe.png"), folder / "probe.json"], data)
