"""The explain and errors commands: attributions for one image, and for every misclassified test image.

Output goes to RUN/explain and RUN/errors (or --out): PNGs, explain_N.json and errors.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import runs
from .errors import UserError
from .explain import METHODS, attribute, cascading_randomisation
from .inspect_jobs import Opened
from .report import figures
from .report import explain_figures as views
from .training import predict

DELTA_WARNING = 0.05  # IG's completeness gap, as a share of f(x) - f(baseline), above which we warn
ERRORS_PER_PAGE = 24


def parse_methods(text: str | None) -> list[str]:
    methods = text.split(",") if text else list(METHODS)
    if unknown := [m for m in methods if m not in METHODS]:
        raise UserError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return methods


def explain_job(run_dir, index: int, methods: str | None = None, target: str | None = None, layer: str | None = None,
                patch: int = 4, stride: int = 2, steps: int = 50, sanity: bool = False, out=None,
                log=print) -> tuple[list[Path], dict]:
    """Explain one test image by each method, towards the predicted class and optionally a second one."""
    methods = parse_methods(methods)
    o = Opened(run_dir, out, "explain")
    if not 0 <= index < len(o.labels):
        raise UserError(f"--index {index} is out of range; the test set has {len(o.labels)} images")
    x = o.x[index : index + 1]
    probabilities = predict(o.model, o.images_u8[index : index + 1]).softmax(1)[0]
    predicted = int(probabilities.argmax())
    classes = [predicted] + ([o.class_index(target)] if target is not None else [])
    options = {"layer": layer, "patch": patch, "stride": stride, "steps": steps}
    rows, report = {}, {"index": index, "label": int(o.labels[index]), "predicted": predicted,
                        "probabilities": probabilities.tolist(), "methods": methods, "towards": {}}
    notes = {}
    for cls in classes:
        maps, entry = {}, {}
        for method in methods:
            a = attribute(o.model, x, torch.tensor([cls]), method, **options)
            maps[method] = a.maps[0]
            entry[method] = {"sum": a.maps.sum().item(), "max": a.maps.max().item(), "min": a.maps.min().item()} | a.notes
            if a.delta is not None:
                relative = abs(a.delta.item()) / max(abs(a.gap.item()), 1e-12)
                entry[method] |= {"completeness_gap": a.gap.item(), "convergence_delta": a.delta.item(),
                                  "relative_delta": relative}
                notes[method] = f"delta {relative:.1%}"
                if relative > DELTA_WARNING:
                    log(f"[yellow]warning[/]: integrated gradients towards {o.names[cls]} miss completeness by "
                        f"{relative:.1%}; raise --steps")
        rows[o.names[cls]] = maps
        report["towards"][o.names[cls]] = entry
    fig = views.explain_figure(o.x[index, 0], rows, probabilities, o.names, int(o.labels[index]), notes)
    written = [figures.save(fig, o.out / f"explain_{index}.png")]
    if sanity:
        result = cascading_randomisation(o.model, x, torch.tensor([predicted]), methods, **options)
        written.append(figures.save(views.sanity_figure(o.x[index, 0], result), o.out / f"sanity_{index}.png"))
        report["sanity"] = {"randomised_from_top": result["layers"], "rank_correlation": result["methods"],
                            "verdicts": {m: _verdict(r) for m, r in result["methods"].items()}}
    runs.write_json(o.out / f"explain_{index}.json", report)
    return written, report


def _verdict(correlations: list[float]) -> str:
    last = correlations[-1]
    if last > 0.5:
        return f"map barely depends on the weights (rho {last:.2f} with all layers random): it explains the input, not the model"
    return f"map changes with the weights (rho {last:.2f} with all layers random): it depends on what the model learned"


def errors_job(run_dir, method: str = "ig", steps: int = 50, out=None, log=print) -> tuple[list[Path], dict]:
    """Group the misclassified test images by (true, predicted) pair and explain each towards both classes."""
    methods = parse_methods(method)
    if len(methods) != 1:
        raise UserError(f"--method takes one method, e.g. ig (got '{method}')")
    (method,) = methods
    o = Opened(run_dir, out, "errors")
    predicted = predict(o.model, o.images_u8).argmax(1)
    wrong = torch.nonzero(predicted != o.labels).flatten()
    pairs: dict[tuple[int, int], list[int]] = {}
    for i in wrong.tolist():
        pairs.setdefault((int(o.labels[i]), int(predicted[i])), []).append(i)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    log(f"{len(wrong)} misclassified test images in {len(ranked)} (true, predicted) pairs")
    written, table = [], []
    for (true, pred), indices in ranked:
        x = o.x[indices]
        towards_pred = attribute(o.model, x, torch.full((len(indices),), pred), method, steps=steps).maps
        towards_true = attribute(o.model, x, torch.full((len(indices),), true), method, steps=steps).maps
        page = o.out / f"pair_{true}_{pred}.png"
        shown = min(len(indices), ERRORS_PER_PAGE)
        fig = views.error_pair_figure(o.x[indices[:shown], 0], towards_pred[:shown], towards_true[:shown],
                                      indices[:shown], o.names[true], o.names[pred], method)
        written.append(figures.save(fig, page))
        table.append({"true": true, "predicted": pred, "true_name": o.names[true], "predicted_name": o.names[pred],
                      "count": len(indices), "indices": indices, "page": page.name})
    report = {"method": method, "misclassified": len(wrong), "test_images": len(o.labels), "pairs": table}
    runs.write_json(o.out / "errors.json", report)
    return written, report
