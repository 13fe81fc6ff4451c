"""The oip command: search OIPs for layers or classes, compare them with the test set, write PNG, JSON, tensors.

RUN/oip/ holds oip.json (one entry per map, merged across calls), oip_LAYER.png (the gallery),
oip_LAYER_starts.png (with --starts > 1) and oip_LAYER.safetensors (images (M, K, 28, 28),
activation (M, K), index (M,)).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import torch

from . import runs
from .errors import UserError
from .inspect.hooks import conv_layers
from .inspect_jobs import Opened
from .oip import OBJECTIVES, Ascent, OIPs, best_test_activation, class_oips, dead_reason, layer_oips
from .oip.search import channel_count
from .report import figures
from .report.oip_figures import oip_gallery_figure, oip_starts_figure


def parse_indices(text: str | None, count: int, what: str) -> list[int] | None:
    """Return indices from '0-7,12' (None for all); out-of-range or malformed text is a UserError."""
    if text is None:
        return None
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text):
        raise UserError(f"{what} '{text}' must be indices and ranges, e.g. 0-7,12")
    picked: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        picked += range(int(lo), int(hi or lo) + 1)
    if max(picked) >= count:
        raise UserError(f"{what} {max(picked)} is out of range: there are {count} (0-{count - 1})")
    return list(dict.fromkeys(picked))


def oip_job(run_dir, layers=None, maps=None, logits=False, classes=None, objective="mean", starts=1, seed=0,
            manifold=0.0, ascent: Ascent = Ascent(), out=None, log=print) -> tuple[list[Path], dict]:
    """Search OIPs for each conv layer (default: all) or, with logits, each class.

    Return the files written and, per layer searched, its summary as oip.json holds it.
    """
    o = Opened(run_dir, out, "oip")
    if logits and (layers or maps):
        raise UserError("--logits searches class OIPs; give --classes, not --layer or --maps")
    if not logits and classes:
        raise UserError("--classes goes with --logits")
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)} (got '{objective}')")
    written, results = [], []
    if logits:
        picked = [o.class_index(c) for c in classes.split(",")] if classes else list(range(len(o.names)))
        anchors = None
        if manifold > 0:  # the mean test image of each class is the anchor the OIP is pulled towards
            anchors = torch.stack([o.x[o.labels == c, 0].mean(0) for c in picked])
            ascent = Ascent(**(asdict(ascent) | {"l2": manifold}))
        oips = class_oips(o.model, picked, starts=starts, ascent=ascent, seed=seed, anchors=anchors)
        results.append((oips, [o.names[c] for c in picked]))
    else:
        convs = conv_layers(o.model)
        layers = layers or convs
        if unknown := [n for n in layers if n not in convs]:
            raise UserError(f"OIPs are searched for conv layers; {', '.join(unknown)} not among {', '.join(convs)}")
        chosen = {layer: parse_indices(maps, channel_count(o.model, layer), "--maps") for layer in layers}
        for layer in layers:
            oips = layer_oips(o.model, layer, chosen[layer], objective, starts=starts, ascent=ascent, seed=seed)
            results.append((oips, None))
            log(f"{layer}: {len(oips.index)} maps in {oips.seconds:.2f} s")
    entries, summaries = [], {}
    for oips, labels in results:
        layer = oips.layer
        best_all, _ = best_test_activation(o.model, o.x, None if layer == "logits" else layer, objective)
        best = best_all[oips.index]
        written.append(figures.save(oip_gallery_figure(oips, best, labels), o.out / f"oip_{layer}.png"))
        if starts > 1:
            written.append(figures.save(oip_starts_figure(oips), o.out / f"oip_{layer}_starts.png"))
        runs.save_tensors(o.out / f"oip_{layer}.safetensors", {
            "images": oips.images, "activation": oips.activation, "index": torch.tensor(oips.index)})
        layer_entries = _entries(oips, best, labels)
        entries += layer_entries
        summaries[layer] = _summary(o.model, oips, layer_entries, starts) | {"settings": {
            "objective": oips.objective, "starts": starts, "seed": seed, "manifold": manifold, "ascent": asdict(ascent)}}
    _merge(o.out / "oip.json", entries, summaries)
    return written, summaries


def _entries(oips: OIPs, best: torch.Tensor, labels) -> list[dict]:
    reached = oips.reached
    similarity = oips.similarity()
    rows = []
    for i, index in enumerate(oips.index):
        ratio = reached[i].item() / best[i].item() if best[i] > 0 else None
        row = {"layer": oips.layer, "map": index, "objective": oips.objective, "activation": reached[i].item(),
               "best_test_activation": best[i].item(), "ratio": ratio,
               "fired_from_start": bool(oips.fired_from_start[i]), "fired": bool(oips.fired[i]),
               "steps": oips.steps, "seconds": oips.seconds}  # seconds: the whole batched search of the layer
        if labels:
            row["class"] = labels[i]
        if oips.images.shape[1] > 1:
            row["start_similarity"] = similarity[i].item()
        rows.append(row)
    return rows


def _summary(model, oips: OIPs, rows: list[dict], starts: int) -> dict:
    ratios = [r["ratio"] for r in rows]
    never = [{"map": r["map"], "reason": dead_reason(model, oips.layer, r["map"], oips.pre_final[i].max().item(),
                                                     oips.steps, starts)}
             for i, r in enumerate(rows) if not r["fired"] and oips.layer != "logits"]
    return {"maps": len(rows), "seconds": oips.seconds,
            "share_beating_test": sum(1 for q in ratios if q is not None and q >= 1) / len(rows),
            "fired_from_start": sum(r["fired_from_start"] for r in rows), "never_fired": never}


def _merge(path: Path, entries: list[dict], summaries: dict) -> None:
    """Write oip.json with these layers' entries replacing earlier ones; other layers' entries are kept."""
    old = runs.read_json(path) if path.exists() else {"maps": [], "layers": {}}
    kept = [e for e in old.get("maps", []) if e["layer"] not in summaries]
    report = {"maps": kept + entries, "layers": old.get("layers", {}) | summaries}
    runs.write_json(path, report)
