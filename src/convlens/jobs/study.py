"""A seed study: do N trainings learn the same filters? Writes study.json and its figures.

Per conv layer: the matched correlations of every pair of runs, which maps of the first run (the
reference) have a partner (r >= PARTNER_R) in every other run ("universal") and which in none; per
layer, CKA's mean and spread over the pairs. An untrained network of the same architecture is the
baseline of every number.
"""

from __future__ import annotations

import glob
import itertools
import re
import statistics
from pathlib import Path

import torch

from ..compare.runs_compare import PARTNER_R, representation_layers
from ..compare.similarity import batch_starts
from ..compare.study import BATCH, Study, finish, study
from ..draw import compare_figures as views
from ..draw import figures
from ..errors import UserError
from ..progress import track
from ..runs import CONFIG, write_json
from . import Result
from .compare import comparable_runs


def run_folders(pattern: str) -> list[Path]:
    """Return the run folders a glob pattern names, sorted; an error when fewer than two."""
    natural = lambda path: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]  # noqa: E731 - s2 before s10
    found = sorted((Path(p) for p in glob.glob(pattern) if (Path(p) / CONFIG).is_file()), key=natural)
    if len(found) < 2:
        raise UserError(f"a study needs at least two run folders; '{pattern}' matches {len(found)}")
    return found


def seed_study(pattern: str, images: int = 2000, out: str | Path | None = None, engine: str = "local",
               address: str | None = None, log=print) -> Result:
    """Compare every pair of the runs a glob pattern names; Result.data is study.json's content.

    engine ray shares the batches of images out as Ray tasks (on a local instance or the cluster at address).
    """
    folders = run_folders(pattern)
    runs = comparable_runs(folders)
    names = [f.resolve().name for f in folders]
    if len(set(names)) != len(names):
        raise UserError("the study's runs need distinct folder names: " + ", ".join(names))
    available = len(runs[0].test_labels)
    if not 10 <= images <= available:
        raise UserError(f"a study uses between 10 and {available} test images (asked for {images})")
    folder = Path(out) if out else folders[0].resolve().parent / f"study-{len(runs)}-runs"
    reference = runs[0]
    untrained = reference.untrained_model(seed=reference.config.train.seed + 12345)
    models = [r.model for r in runs] + [untrained]  # the untrained net is the last model
    log(f"study of {len(runs)} runs ({', '.join(names)}) on {images} test images")
    x, convs, compared = reference.test_inputs[:images], reference.layers.convs, representation_layers(reference.layers)
    if engine == "ray":
        from ..ray_engine import study_on_ray

        sums = study_on_ray(models, x, convs, compared, batch_starts(len(x), BATCH), address)
        s = finish(sums, len(models), convs, compared)
    else:
        s = study(models, x, convs, compared,
                  each_batch=lambda starts: track(starts, f"maps of {len(models)} networks, batch by batch"))
    report = _report(s, names, images, {n: str(f) for n, f in zip(names, folders)})
    write_json(folder / "study.json", report)
    written = _figures(s, report, folder)
    return Result(written + [folder / "study.json"], report)


def _report(s: Study, names: list[str], images: int, folders: dict) -> dict:
    count = len(names)
    untrained = count  # index of the baseline model
    pairs = list(itertools.combinations(range(count), 2))
    layers = {}
    for layer in s.conv_layers:
        pooled = torch.cat([s.matched_correlation(layer, i, j) for i, j in pairs])
        shares = [(s.matched_correlation(layer, i, j) >= PARTNER_R).float().mean().item() for i, j in pairs]
        baseline = torch.cat([s.matched_correlation(layer, i, untrained) for i in range(count)])
        partners = s.partners_of(layer, 0, list(range(1, count)))
        live = ~s.silent[layer][0]
        layers[layer] = {
            "pairs": len(pairs),
            "matched_correlation": _spread(pooled),
            "share_with_partner": {"mean": statistics.fmean(shares), "min": min(shares), "max": max(shares)},
            "untrained": {"matched_correlation": _spread(baseline),
                          "share_with_partner": (baseline >= PARTNER_R).float().mean().item()},
            "partners_per_map": partners.tolist(),  # of the reference run's maps, in how many other runs
            "universal_maps": torch.nonzero((partners == count - 1) & live).flatten().tolist(),
            "maps_without_partner": torch.nonzero((partners == 0) & live).flatten().tolist(),
            "silent_maps": torch.nonzero(~live).flatten().tolist(),
        }
    trained_cka = torch.stack([s.cka[i, j] for i, j in pairs])  # (pairs, L)
    untrained_cka = torch.stack([s.cka[i, untrained] for i in range(count)])
    return {"runs": folders, "reference": names[0], "images": images, "partner_threshold": PARTNER_R,
            "layers": layers,
            "cka": {"layers": s.cka_layers, "mean": trained_cka.mean(0).tolist(),
                    "std": trained_cka.std(0, unbiased=False).tolist(), "min": trained_cka.amin(0).tolist(),
                    "untrained_mean": untrained_cka.mean(0).tolist()}}


def _spread(values: torch.Tensor) -> dict:
    q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9])).tolist() if len(values) else [float("nan")] * 3
    return {"mean": values.mean().item() if len(values) else float("nan"), "p10": q[0], "median": q[1], "p90": q[2],
            "maps": len(values)}


def _figures(s: Study, report: dict, folder: Path) -> list[Path]:
    count = len(report["runs"])
    pairs = list(itertools.combinations(range(count), 2))
    pooled = {layer: torch.cat([s.matched_correlation(layer, i, j) for i, j in pairs]) for layer in s.conv_layers}
    baseline = {layer: torch.cat([s.matched_correlation(layer, i, count) for i in range(count)])
                for layer in s.conv_layers}
    cka = report["cka"]
    live_partners = {layer: [c for k, c in enumerate(v["partners_per_map"]) if k not in v["silent_maps"]]
                     for layer, v in report["layers"].items()}
    return [
        figures.save(views.matched_correlation_figure(pooled, {"untrained": baseline}, density=True), folder / "matched_all_pairs.png"),
        figures.save(views.partners_figure(live_partners, count - 1, report["reference"]), folder / "partners.png"),
        figures.save(views.cka_spread_figure(cka["layers"], cka["mean"], cka["std"], cka["untrained_mean"], count),
                     folder / "cka_spread.png"),
    ]
