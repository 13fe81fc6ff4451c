"""Every feature map of chosen layers for chosen test images, side by side: RUN/maps/."""

from __future__ import annotations

from pathlib import Path

from ..draw import CMAPS, SCALES, figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection.maps import feature_maps
from ..runs import Run, write_json
from ..training import predict
from . import Result, open_run, writes_into_run


@writes_into_run("maps")
def maps(run: Run | str | Path, images: list[int], layers: list[str] | None = None, cmap: str = "gray",
         scale: str = "layer", out: str | Path | None = None) -> Result:
    """Draw every map of each layer (default: all map layers) for the test images at `images`."""
    if cmap not in CMAPS or scale not in SCALES:
        raise UserError(f"the colour map must be one of {', '.join(CMAPS)} and the scale one of {', '.join(SCALES)}")
    run = open_run(run)
    if not images:
        raise UserError("choose at least one test image")
    for i in images:
        run.check_test_index(i)
    layers = layers or run.layers.map_layers
    for layer in layers:
        run.layers[layer]  # noqa: B018 - an unknown name is an error that lists the layers
    folder, names, labels = run.output_folder("maps", out), run.class_names, run.test_labels
    found = feature_maps(run.model, run.test_inputs[images], layers)
    predicted = predict(run.model, run.test_images[images]).argmax(1).tolist()
    titles = [f"#{i}: {names[labels[i]]} (pred {names[p]})" for i, p in zip(images, predicted)]
    files = [figures.save(views.feature_map_figure(run.test_images[images], m, layer, titles, cmap=cmap, scale=scale),
                          folder / f"maps_{layer}.png") for layer, m in found.items()]
    data = {"images": images, "labels": [int(labels[i]) for i in images], "predictions": predicted,
            "layers": {layer: {"shape": list(m.shape[1:]), "max_per_map": m.amax((2, 3)).tolist()}
                       for layer, m in found.items()}}
    write_json(folder / "maps.json", data)
    return Result(files + [folder / "maps.json"], data)
