"""For every map, the test images that drive it hardest, cropped to the receptive field: RUN/top/."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..draw import figures
from ..draw import inspect_figures as views
from ..inspection.maps import top_activations
from ..progress import track
from ..runs import Run, write_json
from . import Result, open_run, writes_into_run

MAPS_PER_PAGE = 8


@writes_into_run("top")
def top(run: Run | str | Path, layer: str | None = None, k: int = 9, out: str | Path | None = None) -> Result:
    """Draw, for every map of a layer (default: the first conv), the k test images with its highest activation."""
    run = open_run(run)
    layer = layer or (run.layers.convs or run.layers.map_layers)[0]
    field = run.layers[layer].field
    found = top_activations(run.model, run.test_inputs, layer, k=k)
    folder, maps = run.output_folder("top", out), list(range(found.indices.shape[0]))
    pages = list(enumerate(range(0, len(maps), MAPS_PER_PAGE)))
    files = [figures.save(views.top_figure(run.test_images, found, field, maps[start : start + MAPS_PER_PAGE], layer),
                          folder / f"top_{layer}_{page:02d}.png")
             for page, start in track(pages, f"drawing {len(pages)} pages of top inputs")]
    data = {"layer": layer, "receptive_field": asdict(field), "indices": found.indices.tolist(),
            "values": found.values.tolist(), "positions": found.positions.tolist()}
    write_json(folder / f"top_{layer}.json", data)
    return Result(files + [folder / f"top_{layer}.json"], data)
