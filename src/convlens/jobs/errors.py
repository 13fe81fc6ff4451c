"""Every misclassified test image, grouped by (true, predicted) pair and explained towards both: RUN/errors/."""

from __future__ import annotations

from pathlib import Path

import torch

from ..draw import figures
from ..draw import explain_figures as views
from ..explain import attribute
from ..runs import Run, write_json
from ..training import predict
from . import Result, open_run, writes_into_run
from ..progress import track
from .explain import check_methods

ERRORS_PER_PAGE = 24


@writes_into_run("errors")
def errors(run: Run | str | Path, method: str = "ig", steps: int = 50, out: str | Path | None = None,
           log=print) -> Result:
    """Group the misclassified test images by (true, predicted) pair, most frequent first, and explain each."""
    (method,) = check_methods([method])
    run = open_run(run)
    names, labels, x = run.class_names, run.test_labels, run.test_inputs
    probabilities = predict(run.model, run.test_images).softmax(1)
    predicted = probabilities.argmax(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    pairs: dict[tuple[int, int], list[int]] = {}
    for i in wrong.tolist():
        pairs.setdefault((int(labels[i]), int(predicted[i])), []).append(i)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    log(f"{len(wrong)} misclassified test images in {len(ranked)} (true, predicted) pairs")
    folder, files, table = run.output_folder("errors", out), [], []
    for n, ((true, pred), indices) in enumerate(track(ranked, "explaining errors", weight=lambda kv: len(kv[1]))):
        log(f"explaining {names[true]}→{names[pred]}: {len(indices)} images ({n + 1}/{len(ranked)})")
        towards_pred = attribute(run.model, x[indices], torch.full((len(indices),), pred), method, steps=steps).maps
        towards_true = attribute(run.model, x[indices], torch.full((len(indices),), true), method, steps=steps).maps
        page, shown = folder / f"pair_{true}_{pred}.png", min(len(indices), ERRORS_PER_PAGE)
        fig = views.error_pair_figure(x[indices[:shown]].mean(1), towards_pred[:shown], towards_true[:shown],
                                      indices[:shown], names[true], names[pred], method)
        files.append(figures.save(fig, page))
        table.append({"true": true, "predicted": pred, "true_name": names[true], "predicted_name": names[pred],
                      "count": len(indices), "indices": indices, "page": page.name,
                      "p_predicted": [round(probabilities[i, pred].item(), 4) for i in indices],
                      "p_true": [round(probabilities[i, true].item(), 4) for i in indices]})
    overview = figures.save(_overview(run, table), folder / "errors_overview.png")
    report = {"method": method, "misclassified": len(wrong), "test_images": len(labels), "overview": overview.name,
              "pairs": table}
    write_json(folder / "errors.json", report)
    return Result([overview, *files, folder / "errors.json"], report)


def _overview(run: Run, pairs: list[dict]):
    """One tile per (true, predicted) pair, most frequent first: its most confident mistake, with the pair's count."""
    surest = [max(range(p["count"]), key=p["p_predicted"].__getitem__) for p in pairs]
    titles = [f"{p['true_name']}→{p['predicted_name']} ×{p['count']}\n#{p['indices'][j]} p={p['p_predicted'][j]:.2f}"
              for p, j in zip(pairs, surest)]
    images = run.test_images[[p["indices"][j] for p, j in zip(pairs, surest)]] if pairs else run.test_images[:0]
    return figures.gallery(images, titles, suptitle="errors: true→predicted ×count; the surest mistake, its test "
                           "index and probability; each pair's page is pair_TRUE_PRED.png")
