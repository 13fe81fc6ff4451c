"""Feature maps of chosen test images: every map of each layer (maps_LAYER.png), or chosen maps across
the images, one row per map (maps_LAYER_across.png; with a class pair, the maps that differ most
between the two classes and the difference of their means): RUN/maps/."""

from __future__ import annotations

from pathlib import Path

import torch

from ..draw import CMAPS, SCALES, figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection.maps import class_patterns, feature_maps
from ..runs import Run, write_json
from ..training import predict
from . import Result, open_run, writes_into_run


@writes_into_run("maps")
def maps(run: Run | str | Path, images: list[int], layers: list[str] | None = None, cmap: str = "gray",
         scale: str = "layer", out: str | Path | None = None) -> Result:
    """Draw every map of each layer (default: all map layers) for the test images at `images`."""
    _check_colours(cmap, scale)
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
    files = figures.save_all(
        [(lambda m=m, layer=layer: views.feature_map_figure(run.test_images[images], m, layer, titles, cmap=cmap,
                                                            scale=scale), folder / f"maps_{layer}.png")
         for layer, m in found.items()], f"drawing {len(found)} layers' maps")
    data = {"images": images, "labels": [int(labels[i]) for i in images], "predictions": predicted,
            "layers": {layer: {"shape": list(m.shape[1:]), "max_per_map": m.amax((2, 3)).tolist()}
                       for layer, m in found.items()}}
    write_json(folder / "maps.json", data)
    return Result(files + [folder / "maps.json"], data)


@writes_into_run("maps")
def maps_across(run: Run | str | Path, images: list[int], layer: str | None = None, chosen: list[int] | None = None,
                differing: tuple[str | int, str | int] | None = None, count: int = 8, cmap: str = "gray",
                scale: str = "layer", out: str | Path | None = None) -> Result:
    """Draw chosen maps of one layer (default: the last conv) across images: one row per map, one column per image.

    `chosen` names the maps; `differing` (two classes) picks the `count` maps whose mean activity
    over the test set differs most between them (Cohen's d, as `patterns` ranks them) and adds a
    column: the mean map of the images of the first class minus that of the second.
    The articles' question "three 4s against a 9 at conv3" is differing=(4, 9) on 4:3,9:1.
    """
    _check_colours(cmap, scale)
    if (chosen is None) == (differing is None):
        raise UserError("choose the maps to show, or two classes whose most different maps to show (not both)")
    run = open_run(run)
    layer = layer or (run.layers.convs or run.layers.map_layers)[-1]
    channels = run.layers[layer].output_shape[0]
    for i in images:
        run.check_test_index(i)
    names, labels = run.class_names, run.test_labels
    effect, pair = None, None
    if differing is not None:
        pair = [run.class_index(c) for c in differing]
        if len(pair) != 2 or pair[0] == pair[1]:
            raise UserError("the maps that differ are found between two different classes, e.g. 4 and 9")
        if not 1 <= count <= channels:
            raise UserError(f"the number of maps must be between 1 and {channels} for {layer}")
        d = class_patterns(run.model, run.test_inputs, labels, layer, num_classes=len(names)).separation(*pair)
        chosen = torch.argsort(d.abs(), descending=True)[:count].tolist()
        effect = [float(d[m]) for m in chosen]
    if bad := [m for m in chosen if not 0 <= m < channels]:
        raise UserError(f"map {bad[0]} does not exist; {layer} has maps 0-{channels - 1}")
    found = feature_maps(run.model, run.test_inputs[images], [layer])[layer][:, chosen]  # (B, M, h, w)
    predicted = predict(run.model, run.test_images[images]).argmax(1).tolist()
    titles = [f"#{i}: {names[labels[i]]}\n(pred {names[p]})" for i, p in zip(images, predicted)]
    difference = None
    if pair is not None:
        of = [[j for j, i in enumerate(images) if labels[i] == c] for c in pair]
        if all(of):  # both classes among the images: their mean maps, first minus second
            a, b = names[pair[0]], names[pair[1]]
            difference = (found[of[0]].mean(0) - found[of[1]].mean(0),
                          f"mean {a} − mean {b}\nred: {a} stronger\nblue: {b} stronger")
    fig = views.maps_across_figure(run.test_images[images], found, layer, chosen, titles, cmap, scale, effect,
                                   difference)
    suffix = f"{pair[0]}_vs_{pair[1]}" if pair else "across"
    folder = run.output_folder("maps", out)
    files = [figures.save(fig, folder / f"maps_{layer}_{suffix}.png")]
    data = {"layer": layer, "images": images, "maps": chosen, "effect_size": effect,
            "classes": [names[c] for c in pair] if pair else None,
            "mean_per_map_and_image": found.mean((2, 3)).T.tolist()}
    write_json(folder / f"maps_{layer}_{suffix}.json", data)
    return Result(files + [folder / f"maps_{layer}_{suffix}.json"], data)


def _check_colours(cmap: str, scale: str) -> None:
    if cmap not in CMAPS or scale not in SCALES:
        raise UserError(f"the colour map must be one of {', '.join(CMAPS)} and the scale one of {', '.join(SCALES)}")
