"""Class patterns: mean map activity per class, never-firing maps, the maps that separate two classes: RUN/patterns/."""

from __future__ import annotations

from pathlib import Path

import torch

from ..draw import figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection.maps import class_patterns
from ..runs import Run, read_json, write_json
from . import Result, open_run, writes_into_run


@writes_into_run("patterns")
def patterns(run: Run | str | Path, layer: str | None = None, pair: tuple[str | int, str | int] | None = None,
             out: str | Path | None = None) -> Result:
    """Write class-mean activations of a layer (default: the last conv) and, for a pair of classes, the separating maps."""
    run = open_run(run)
    layer = layer or (run.layers.convs or run.layers.map_layers)[-1]
    run.layers[layer]  # noqa: B018 - an unknown name is an error that lists the layers
    classes = [run.class_index(c) for c in pair] if pair else None
    if classes is not None and (len(classes) != 2 or classes[0] == classes[1]):
        raise UserError(f"patterns compares two different classes, e.g. 4 and 9 (got {', '.join(map(str, pair))})")
    names, folder = run.class_names, run.output_folder("patterns", out)
    p = class_patterns(run.model, run.test_inputs, run.test_labels, layer, num_classes=len(names))
    files = [figures.save(views.class_activation_figure(p.mean_activation, p.fire_rate, names, layer),
                          folder / f"patterns_{layer}.png")]
    report = {"layer": layer, "mean_activation": p.mean_activation.tolist(), "fire_rate": p.fire_rate.tolist(),
              "never_fires": {names[k]: maps for k, maps in p.never_fires().items()}, "pairs": {}}
    if classes:
        a, b = classes
        d = p.separation(a, b)
        ranked = torch.argsort(d.abs(), descending=True)
        report["pairs"][f"{names[a]},{names[b]}"] = [{"map": int(m), "effect_size": float(d[m])} for m in ranked]
        files.append(figures.save(views.separation_figure(d, p.mean_maps, a, b, names, layer),
                                  folder / f"patterns_{layer}_{a}_vs_{b}.png"))
    # One patterns.json per folder, keyed by layer, so patterns of several layers sit together.
    path = folder / "patterns.json"
    write_json(path, (read_json(path) if path.exists() else {}) | {layer: report})
    return Result(files + [path], report)
