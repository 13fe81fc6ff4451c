"""Attributions for one test image by several methods, with the sanity check: RUN/explain/."""

from __future__ import annotations

from pathlib import Path

import torch

from ..draw import figures
from ..draw import explain_figures as views
from ..errors import UserError
from ..explain import METHODS, attribute, cascading_randomisation
from ..runs import Run, write_json
from ..training import predict
from . import Result, open_run, writes_into_run

DELTA_WARNING = 0.05  # IG's completeness gap, as a share of f(x) - f(baseline), above which we warn


def check_methods(methods: list[str] | None) -> list[str]:
    """Return the methods asked for (default: all) after checking each is registered."""
    methods = list(methods or METHODS)
    if unknown := [m for m in methods if m not in METHODS]:
        raise UserError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return methods


@writes_into_run("explain")
def explain(run: Run | str | Path, index: int, methods: list[str] | None = None, target: str | int | None = None,
            layer: str | None = None, patch: int = 4, stride: int = 2, steps: int = 50, sanity: bool = False,
            out: str | Path | None = None, log=print) -> Result:
    """Explain one test image by each method, towards the predicted class and optionally a second one."""
    methods = check_methods(methods)
    if steps < 1:
        raise UserError("integrated gradients need at least 1 step")
    run = open_run(run)
    run.check_test_index(index)
    names, x = run.class_names, run.test_inputs[index : index + 1]
    probabilities = predict(run.model, run.test_images[index : index + 1]).softmax(1)[0]
    predicted = int(probabilities.argmax())
    classes = [predicted] + ([run.class_index(target)] if target is not None else [])
    options = {"layer": layer, "patch": patch, "stride": stride, "steps": steps}
    rows, report = {}, {"index": index, "label": int(run.test_labels[index]), "predicted": predicted,
                        "probabilities": probabilities.tolist(), "methods": methods, "towards": {}}
    notes = {}
    for cls in classes:
        maps, entry = {}, {}
        for method in methods:
            a = attribute(run.model, x, torch.tensor([cls]), method, **options)
            maps[method] = a.maps[0]
            entry[method] = {"sum": a.maps.sum().item(), "max": a.maps.max().item(), "min": a.maps.min().item()} | a.notes
            if a.delta is not None:
                relative = abs(a.delta.item()) / max(abs(a.gap.item()), 1e-12)
                entry[method] |= {"completeness_gap": a.gap.item(), "convergence_delta": a.delta.item(),
                                  "relative_delta": relative}
                notes[method] = f"delta {relative:.1%}"
                if relative > DELTA_WARNING:
                    log(f"[yellow]warning[/]: integrated gradients towards {names[cls]} miss completeness by "
                        f"{relative:.1%}; use more steps")
        rows[names[cls]] = maps
        report["towards"][names[cls]] = entry
    folder, grey = run.output_folder("explain", out), x[0].mean(0)  # (H, W): the outline drawn over each map
    fig = views.explain_figure(grey, rows, probabilities, names, int(run.test_labels[index]), notes)
    written = [figures.save(fig, folder / f"explain_{index}.png")]
    if sanity:
        result = cascading_randomisation(run.model, x, torch.tensor([predicted]), methods, **options)
        written.append(figures.save(views.sanity_figure(grey, result), folder / f"sanity_{index}.png"))
        report["sanity"] = {"randomised_from_top": result["layers"], "rank_correlation": result["methods"],
                            "verdicts": result["verdicts"]}
    write_json(folder / f"explain_{index}.json", report)
    return Result(written + [folder / f"explain_{index}.json"], report)
