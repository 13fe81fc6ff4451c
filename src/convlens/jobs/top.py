"""For every map, the test images that drive it hardest, cropped to the receptive field: RUN/top/."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..draw import figures
from ..draw import inspect_figures as views
from ..errors import UserError
from ..inspection.maps import top_activations
from ..progress import track
from ..runs import Run, write_json
from . import Result, open_run, writes_into_run

MAPS_PER_PAGE = 8


@writes_into_run("top")
def top(run: Run | str | Path, layer: str | None = None, k: int = 9, maps: list[int] | None = None,
        out: str | Path | None = None) -> Result:
    """Draw, for every map of a layer (default: the first conv) or the `maps` asked for, the k test images with
    its highest activation: pages of MAPS_PER_PAGE maps named by their numbers, an overview of every map's
    strongest crop, and top_LAYER.json with each map's test indices, activations, peak positions and page."""
    run = open_run(run)
    layer = layer or (run.layers.convs or run.layers.map_layers)[0]
    field = run.layers[layer].field
    found = top_activations(run.model, run.test_inputs, layer, k=k)
    count = found.indices.shape[0]
    if maps is not None and (wrong := [m for m in maps if not 0 <= m < count]):
        raise UserError(f"{layer} has maps 0-{count - 1}; there is no map {wrong[0]}")
    folder, maps = run.output_folder("top", out), list(range(count)) if maps is None else maps
    pages = {f"top_{layer}_maps_{_span(chunk, count)}.png": chunk
             for chunk in (maps[start : start + MAPS_PER_PAGE] for start in range(0, len(maps), MAPS_PER_PAGE))}
    files = [figures.save(views.top_figure(run.test_images, found, field, chunk, layer), folder / name)
             for name, chunk in track(list(pages.items()), f"drawing {len(pages)} pages of top inputs")]
    overview = figures.save(views.top_overview_figure(run.test_images, found, field, layer),
                            folder / f"top_{layer}_overview.png")
    page_of = {m: name for name, chunk in pages.items() for m in chunk}
    data = {"layer": layer, "receptive_field": asdict(field), "overview": overview.name,
            "maps": [{"map": m, "page": page_of.get(m), "indices": found.indices[m].tolist(),
                      "values": found.values[m].tolist(), "positions": found.positions[m].tolist()}
                     for m in range(count)]}
    write_json(folder / f"top_{layer}.json", data)
    return Result([overview, *files, folder / f"top_{layer}.json"], data)


def _span(maps: list[int], count: int) -> str:
    """A page's maps for its file name, zero-padded so pages sort: 072-079 for a run, 052_003 for maps picked."""
    digits = len(str(count - 1))
    if maps == list(range(maps[0], maps[-1] + 1)):
        return f"{maps[0]:0{digits}d}-{maps[-1]:0{digits}d}"
    return "_".join(f"{m:0{digits}d}" for m in maps)
