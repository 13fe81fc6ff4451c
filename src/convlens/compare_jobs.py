"""The compare command: every pair of runs, with an untrained network and the run itself as baselines.

Writes compare.json and PNGs into one folder named for the runs (default: beside the first run).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import torch

from . import runs
from .compare import compare_models
from .compare.runs_compare import agreement
from .data import load_dataset
from .errors import UserError
from .inspect.filters import conv_weight
from .inspect.hooks import require_conv_layer
from .models import build_model, resolve_spec
from .oip import layer_oips
from .oip.search import channel_count
from .report import figures
from .report import compare_figures as views
from .speed import for_inference, images_to_device

DISAGREEMENT_EXAMPLES = 12


def compare_job(run_dirs: list[str], images: int = 2000, out=None, oip_layer: str | None = None,
                log=print) -> tuple[list[Path], dict]:
    """Compare every pair of runs; return the files written and the content of compare.json."""
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two runs")
    loaded = [runs.load_run(d) for d in run_dirs]
    specs = {resolve_spec(r.config.model.model) for r in loaded}
    if len(specs) != 1:
        raise UserError(f"the runs have different architectures ({', '.join(sorted(specs))}); compare needs the same one")
    if len({r.config.data.dataset for r in loaded}) != 1:
        raise UserError("the runs were trained on different data sets")
    if oip_layer:
        require_conv_layer(loaded[0].model, oip_layer, "--oips takes a conv layer")
    names = _unique_names(run_dirs)
    folder = Path(out) if out else Path(run_dirs[0]).resolve().parent / ("compare-" + "-vs-".join(names))
    ds = load_dataset(loaded[0].config.data.dataset)
    if not 10 <= images <= len(ds.test_labels):
        raise UserError(f"--images must be between 10 and {len(ds.test_labels)}")
    x = images_to_device(ds.test_images[:images], torch.device("cpu"))
    written, pairs = [], {}
    baselines = _baselines(loaded[0].model, loaded[0].config, x, ds.num_classes, ds)
    for (i, a), (j, b) in itertools.combinations(enumerate(loaded), 2):
        key = f"{names[i]} vs {names[j]}"
        log(f"comparing {key} on {images} test images")
        c = compare_models(a.model, b.model, x)
        share, differ, pa, pb = agreement(a.model, b.model, ds.test_images)
        pairs[key] = c.summary() | {"prediction_agreement": share, "disagreements": len(differ), "examples": [
            {"index": k, "label": int(ds.test_labels[k]), names[i]: int(pa[k]), names[j]: int(pb[k])}
            for k in differ[:DISAGREEMENT_EXAMPLES].tolist()]}
        stem = f"{names[i]}_vs_{names[j]}"
        written += _pair_figures(folder, stem, a, b, c, (names[i], names[j]), baselines, oip_layer)
    report = {"runs": dict(zip(names, map(str, run_dirs))), "images": images, "pairs": pairs,
              "baselines": {k: v["summary"] for k, v in baselines.items()}}
    runs.write_json(folder / "compare.json", report)
    return written, report


def _unique_names(run_dirs: list[str]) -> list[str]:
    names = [Path(d).resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [f"{n}{k}" for k, n in enumerate(names)]


def _baselines(model, config, x, num_classes, ds) -> dict:
    """What 'full similarity' and 'no similarity' look like: the run against itself and against an untrained net."""
    torch.manual_seed(config.train.seed + 12345)
    untrained = for_inference(build_model(config.model.model, num_classes=num_classes))
    out = {}
    for name, other in (("self", model), ("untrained", untrained)):
        c = compare_models(model, other, x)
        share, *_ = agreement(model, other, ds.test_images)
        out[name] = {"comparison": c, "summary": c.summary() | {"prediction_agreement": share}}
    return out


def _pair_figures(folder: Path, stem: str, a, b, c, names, baselines, oip_layer) -> list[Path]:
    written = [figures.save(views.cka_figure(c.cka, c.cka_layers, names), folder / f"cka_{stem}.png")]
    per_layer = {m.layer: m.matched_correlation for m in c.layers}
    untrained = {m.layer: m.matched_correlation for m in baselines["untrained"]["comparison"].layers}
    written.append(figures.save(views.matched_correlation_figure(per_layer, {"untrained": untrained}),
                                folder / f"matched_{stem}.png"))
    first = c.layers[0]
    if first.kernel_matched is not None:
        wa, wb = conv_weight(a.model, first.layer)[0], conv_weight(b.model, first.layer)[0]
        written.append(figures.save(views.kernel_pairs_figure(wa, wb, first.kernel_matched, first.kernel_cosine, names),
                                    folder / f"kernels_{stem}.png"))
    if oip_layer:
        match = next(m for m in c.layers if m.layer == oip_layer)
        oa, ob = (_oips(r, oip_layer) for r in (a, b))  # cached: each run's OIPs are searched once
        written.append(figures.save(views.oip_pairs_figure(oa, ob, match.matched, match.matched_correlation, oip_layer, names),
                                    folder / f"oips_{oip_layer}_{stem}.png"))
    return written


@functools.cache
def _cached_oips(path: str, layer: str) -> torch.Tensor:
    return layer_oips(runs.load_run(path).model, layer).best


def _oips(run, layer: str) -> torch.Tensor:
    """Return the run's OIPs of a layer (M, 28, 28): from RUN/oip when `convlens oip` wrote them for all maps, else computed."""
    path = Path(run.path) / "oip" / f"oip_{layer}.safetensors"
    if path.exists():
        tensors, _ = runs.load_tensors(path)
        if tensors["index"].tolist() == list(range(channel_count(run.model, layer))):
            best = tensors["activation"].argmax(1)
            return tensors["images"][torch.arange(len(best)), best]
    return _cached_oips(str(Path(run.path).resolve()), layer)
