"""OIPs of conv layers or classes, compared with the test set: PNG, JSON and tensors in RUN/oip/.

RUN/oip/ holds oip.json (one entry per map, merged across calls), oip_LAYER.png (the gallery),
oip_LAYER_starts.png (with several starts) and oip_LAYER.safetensors (images (M, K, C, H, W),
activation (M, K), index (M,)), which `Run.saved_oips` reads back.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..draw import figures
from ..draw.oip_figures import oip_gallery_figure, oip_starts_figure
from ..errors import UserError
from ..oip import OBJECTIVES, Ascent, OIPs, best_test_activation, class_oips, dead_reason, layer_oips
from ..oip.search import checked_maps
from ..runs import Run, oip_tensors, read_json, save_tensors, write_json
from . import Result, open_run, writes_into_run


@writes_into_run("oip")
def layer_oip(run: Run | str | Path, layers: list[str] | None = None, maps: list[int] | None = None,
              objective: str = "mean", starts: int = 1, ascent: Ascent = Ascent(), out: str | Path | None = None,
              log=print) -> Result:
    """Search the OIPs of each conv layer's maps (default: every conv layer, every map).

    Result.data holds, per layer searched, its summary as oip.json holds it.
    """
    run = open_run(run)
    if objective not in OBJECTIVES:
        raise UserError(f"the objective must be one of {', '.join(OBJECTIVES)} (got '{objective}')")
    layers = layers or run.layers.convs
    found = []
    for layer in layers:  # every layer and map checked before the first search starts
        checked_maps(run.layers, layer, maps)
    for layer in layers:
        oips = layer_oips(run.model, layer, maps, objective, starts=starts, ascent=ascent, seed=ascent.seed,
                          progress=f"{layer}: OIPs, step by step")
        log(f"{layer}: {len(oips.index)} maps in {oips.seconds:.2f} s")
        found.append((oips, None))
    return _write(run, found, objective, starts, 0.0, ascent, out)


@writes_into_run("oip")
def class_oip(run: Run | str | Path, classes: list[str | int] | None = None, starts: int = 1, manifold: float = 0.0,
              ascent: Ascent = Ascent(), out: str | Path | None = None) -> Result:
    """Search, per class (default: all), the input that maximises its logit; `manifold` pulls it towards the class mean."""
    run = open_run(run)
    picked = [run.class_index(c) for c in classes] if classes else list(range(len(run.class_names)))
    anchors = None
    if manifold > 0:  # the mean test image of each class is the anchor the OIP is pulled towards
        anchors = torch.stack([run.test_inputs[run.test_labels == c].mean(0) for c in picked])  # (classes, C, H, W)
        ascent = replace(ascent, l2=manifold)
    oips = class_oips(run.model, picked, starts=starts, ascent=ascent, seed=ascent.seed, anchors=anchors,
                      progress="class OIPs, step by step")
    return _write(run, [(oips, [run.class_names[c] for c in picked])], "logit", starts, manifold, ascent, out)


def _write(run: Run, found: list[tuple[OIPs, list[str] | None]], objective: str, starts: int, manifold: float,
           ascent: Ascent, out) -> Result:
    folder = run.output_folder("oip", out)
    files, entries, summaries = [], [], {}
    for oips, labels in found:
        layer = oips.layer
        best_all, which = best_test_activation(run.model, run.test_inputs, None if layer == "logits" else layer,
                                               "mean" if layer == "logits" else objective)
        best = best_all[oips.index]
        classified = None
        if layer == "logits":  # does the model call each class's OIP by its class?
            with torch.no_grad():
                classified = [run.class_names[c] for c in run.model(oips.best).argmax(1).tolist()]
        field = None
        if layer != "logits":  # the receptive field of the map's centre unit, where the "center" objective looks
            _, h, w = run.layers[layer].output_shape
            field = run.layers[layer].field.box(h // 2, w // 2, run.test_inputs.shape[-2])
        files.append(figures.save(oip_gallery_figure(oips, best, labels, field=field, classified=classified,
                                                     best_images=run.test_inputs[which[oips.index]]),
                                  folder / f"oip_{layer}.png"))
        if starts > 1:
            files.append(figures.save(oip_starts_figure(oips), folder / f"oip_{layer}_starts.png"))
        save_tensors(folder / oip_tensors(layer), {
            "images": oips.images, "activation": oips.activation, "index": torch.tensor(oips.index)})
        layer_entries = _entries(oips, best, labels, classified)
        entries += layer_entries
        summaries[layer] = _summary(run.model, oips, layer_entries, starts) | {"settings": {
            "objective": oips.objective, "starts": starts, "seed": ascent.seed, "manifold": manifold,
            "ascent": asdict(ascent)}}
    _merge(folder / "oip.json", entries, summaries)
    return Result(files + [folder / "oip.json"], summaries)


def _entries(oips: OIPs, best: torch.Tensor, labels, classified: list[str] | None) -> list[dict]:
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
        if classified:
            row["classified_as"] = classified[i]
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
    old = read_json(path) if path.exists() else {"maps": [], "layers": {}}
    kept = [e for e in old.get("maps", []) if e["layer"] not in summaries]
    report = {"maps": kept + entries, "layers": old.get("layers", {}) | summaries}
    write_json(path, report)
