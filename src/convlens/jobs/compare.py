"""Compare runs: every pair, with an untrained network and the run itself as baselines.

Writes compare.json and PNGs into one folder named for the runs (default: beside the first run).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import torch

from ..compare import compare_models
from ..compare.runs_compare import agreement, paired_layers
from ..draw import compare_figures as views
from ..draw import figures
from ..errors import UserError
from ..inspection.filters import conv_weight
from ..oip import layer_oips
from ..progress import track
from ..runs import Run, load_run, write_json
from . import Result

DISAGREEMENT_EXAMPLES = 12


def compare(run_dirs: list[str | Path], images: int = 2000, out: str | Path | None = None,
            oip_layer: str | None = None, log=print) -> Result:
    """Compare every pair of runs on the first `images` test images; Result.data is compare.json's content."""
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two runs")
    loaded = comparable_runs(run_dirs)
    if oip_layer:
        loaded[0].layers.require(oip_layer, "conv", "OIPs of matched maps are drawn for a conv layer")
    names = _unique_names(run_dirs)
    folder = Path(out) if out else Path(run_dirs[0]).resolve().parent / ("compare-" + "-vs-".join(names))
    first = loaded[0]
    available = len(first.test_labels)
    if not 10 <= images <= available:
        raise UserError(f"compare uses between 10 and {available} test images (asked for {images})")
    x, x_u8, labels = first.test_inputs[:images], first.test_images, first.test_labels
    written, pairs = [], {}
    baselines = _baselines(first, x)
    for (i, a), (j, b) in track(list(itertools.combinations(enumerate(loaded), 2)), "comparing pairs of runs"):
        key = f"{names[i]} vs {names[j]}"
        log(f"comparing {key} on {images} test images")
        c = compare_models(a.model, b.model, x)
        share, differ, pa, pb = agreement(a.model, b.model, x_u8)
        pairs[key] = c.summary() | {"prediction_agreement": share, "disagreements": len(differ), "examples": [
            {"index": k, "label": int(labels[k]), names[i]: int(pa[k]), names[j]: int(pb[k])}
            for k in differ[:DISAGREEMENT_EXAMPLES].tolist()]}
        stem = f"{names[i]}_vs_{names[j]}"
        written += _pair_figures(folder, stem, a, b, c, (names[i], names[j]), baselines, oip_layer)
    report = {"runs": dict(zip(names, map(str, run_dirs))), "images": images, "pairs": pairs,
              "baselines": {k: v["summary"] for k, v in baselines.items()}}
    write_json(folder / "compare.json", report)
    return Result(written + [folder / "compare.json"], report)


def comparable_runs(run_dirs: list[str | Path]) -> list[Run]:
    """Return the runs loaded; a UserError when their layers differ in kind or shape, or their data sets differ."""
    loaded = [load_run(d) for d in run_dirs]
    for other in loaded[1:]:
        paired_layers(loaded[0].layers, other.layers)
    if len({r.config.data.dataset for r in loaded}) != 1:
        raise UserError("the runs were trained on different data sets")
    return loaded


def _unique_names(run_dirs: list[str]) -> list[str]:
    names = [Path(d).resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [f"{n}{k}" for k, n in enumerate(names)]


def _baselines(run: Run, x: torch.Tensor) -> dict:
    """What 'full similarity' and 'no similarity' look like: the run against itself and against an untrained net."""
    untrained = run.untrained_model(seed=run.config.train.seed + 12345)
    out = {}
    for name, other in (("self", run.model), ("untrained", untrained)):
        c = compare_models(run.model, other, x)
        share, *_ = agreement(run.model, other, run.test_images)
        out[name] = {"comparison": c, "summary": c.summary() | {"prediction_agreement": share}}
    return out


def _pair_figures(folder: Path, stem: str, a, b, c, names, baselines, oip_layer) -> list[Path]:
    written = [figures.save(views.cka_figure(c.cka, c.cka_layers, names), folder / f"cka_{stem}.png")]
    per_layer = {m.layer: m.live_correlation for m in c.layers}
    untrained = {m.layer: m.live_correlation for m in baselines["untrained"]["comparison"].layers}
    written.append(figures.save(views.matched_correlation_figure(per_layer, {"untrained": untrained}),
                                folder / f"matched_{stem}.png"))
    first = c.layers[0]
    if first.kernel_matched is not None:
        wa, wb = conv_weight(a.model, first.layer)[0], conv_weight(b.model, first.layer_b)[0]
        written.append(figures.save(views.kernel_pairs_figure(wa, wb, first.kernel_matched, first.kernel_cosine, names),
                                    folder / f"kernels_{stem}.png"))
    if oip_layer:
        match = next(m for m in c.layers if m.layer == oip_layer)
        oa, ob = _oips(a, oip_layer), _oips(b, match.layer_b)
        written.append(figures.save(views.oip_pairs_figure(oa, ob, match.matched, match.matched_correlation, oip_layer, names),
                                    folder / f"oips_{oip_layer}_{stem}.png"))
    return written


@functools.cache
def _searched_oips(path: str, layer: str) -> torch.Tensor:
    return layer_oips(load_run(path).model, layer, progress=f"{Path(path).name}: {layer} OIPs, step by step").best


def _oips(run: Run, layer: str) -> torch.Tensor:
    """Return the run's OIPs of a layer (M, C, H, W): those `convlens oip` stored when it searched every map, else searched now."""
    saved = run.saved_oips(layer)
    if saved is not None and saved.index == list(range(run.layers[layer].channels)):
        return saved.images
    return _searched_oips(str(run.path.resolve()), layer)  # cached: each run's OIPs are searched once
