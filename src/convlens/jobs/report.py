"""The report command: one offline report.html per run, with everything the run folder holds.

Always there: config, model summary, training curves, test metrics, confusion matrix, the
misclassified gallery, feature maps of sample images and the first layer's kernels (drawn now).
When an inspection has been run: its PNGs (OIPs, class patterns, top inputs, probes, attributions,
errors, kernels, comparisons that name this run), in the order of the article series.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import runs
from ..compare.runs_compare import PARTNER_R
from ..draw import figures, graph_figure
from ..draw import inspect_figures as views
from ..draw.html import Section, render
from ..inspection import filters
from ..inspection.maps import feature_maps
from ..progress import track
from ..runs import Run
from ..storage import PNG_SIGNATURE, Refused, folder_lock, read_inside
from .train import evaluate_run, lr_schedule

# What each inspection's sub-folder (runs.INSPECTIONS, in the order of the articles) shows: {folder: (title, intro)}.
ARTIFACTS = {
    "maps": ("Feature maps of chosen images", "Figures written by convlens maps: every map for chosen images, or "
             "chosen maps across images."),
    "kernels": ("Kernels", "Figures written by convlens kernels: learned filters and, deeper, their norms."),
    "filters": ("Classic filters against learned ones", "convlens filters-demo: Sobel, blur and friends beside conv1."),
    "patterns": ("Class patterns", "convlens patterns: mean activity per class and the maps that separate two classes."),
    "top": ("Top inputs", "convlens top: the test images that drive each map hardest, cropped to its receptive field."),
    "probe": ("What each layer knows", "convlens probe: linear and nearest-centroid probes of every layer."),
    "oip": ("OIPs", "convlens oip: the input that drives each map (or class) hardest, found by gradient ascent from noise."),
    "explain": ("Attributions", "convlens explain: which pixels push towards the answer, by several methods (Captum)."),
    "errors": ("Misclassification explorer", "convlens errors: misclassified images explained towards both classes."),
}
MAX_INLINED_PNG = 32 * 2**20  # bytes; the largest figure convlens draws is a few MB
SAMPLE_CLASSES = (4, 9)  # the articles' pair: a "4" and a "9" look alike to the network


@dataclass
class Inlined:
    """Reads the PNGs a report inlines: regular files inside their own folder, never through a link."""

    left_out: list[tuple[str, str]] = field(default_factory=list)  # (file, why), shown in the report

    def png(self, root: Path, path: Path) -> bytes | None:
        """Return the PNG's bytes, or None (noting why) for a link, a device, a FIFO, a huge or a non-PNG file."""
        try:
            return read_inside(root, path, MAX_INLINED_PNG, PNG_SIGNATURE)
        except Refused as e:
            self.left_out.append((str(path), str(e)))
            return None

    def figure(self, s: Section, root: Path, path: Path, caption: str, wide: bool = False) -> None:
        if (data := self.png(root, path)) is not None:
            s.figure(data, caption, wide=wide)

    def drawn_unless_safe(self, root: Path, path: Path, draw):
        """Return the file's PNG where it is a safe one, else a freshly drawn figure."""
        return (self.png(root, path) if os.path.lexists(path) else None) or draw()


def report(run_dir: str | Path, out: str | Path | None = None, log=print) -> Path:
    """Write RUN/report.html (or `out`) and return its path; say which files were left out, and why."""
    with folder_lock(Path(run_dir), "convlens report"):
        return _report(Path(run_dir), out, log)


def _report(run_dir: Path, out, log) -> Path:
    o = Run(run_dir)
    files = Inlined()
    config, model, history = o.config, o.model, o.history
    # eval wrote metrics.json and its plots; a run without them is evaluated now, writing the same files.
    metrics = o.metrics or evaluate_run(run_dir, dataset=o.dataset, model=model)
    rows = o.layers.layers
    cards = [("test accuracy", f"{metrics['test_accuracy']:.2%}"), ("test loss", f"{metrics['test_loss']:.4f}"),
             ("data set", config.data.dataset), ("model", config.model.model),
             ("parameters", f"{sum(r.params for r in rows):,}"),
             ("epochs", f"{len(history)} of {config.train.epochs}" if o.unfinished else str(len(history)))
             if not o.imported else ("trained with", o.imported["format"])]
    sections = []
    if o.unfinished:
        sections.append(Section("Unfinished run", "unfinished", o.unfinished + ". The figures below show the "
                                "weights of the last finished epoch."))
    if o.imported:
        sections.append(Section("Where the model came from", "source", "Imported with convlens import; the file's "
                                "sha256 identifies exactly which weights these figures show.")
                        .pairs(list(o.imported.items())))
    if history:
        curves = run_dir / runs.PLOTS / runs.CURVES
        drawn = {run_dir.name: (history, lr_schedule(config.train))}
        sections.append(Section("Training", "training", "Loss per step and per epoch, accuracy per epoch, training "
                                "against validation, and the learning rate the schedule set each step.").figure(
            files.drawn_unless_safe(run_dir, curves, lambda: figures.curves(drawn)), "curves", wide=True))
    sections.append(_test_section(run_dir, o, metrics, files))
    sections.append(_maps_section(o))
    first = o.layers.convs[:1]
    if first and not (run_dir / "kernels" / f"kernels_{first[0]}.png").is_file():  # else `kernels` drew them
        sections.append(_kernel_section(o))
    for folder in runs.INSPECTIONS:
        title, intro = ARTIFACTS[folder]
        if not (pngs := sorted((run_dir / folder).glob("*.png"))):
            continue
        if o.inspection_is_current(run_dir / folder):
            sections.append(_artifact_section(folder, title, intro, pngs, run_dir, files))
        else:  # drawn from weights this run no longer has (it trained further since): shown as stale, not as fact
            sections.append(Section(title, folder, f"{intro} The {len(pngs)} figures in {run_dir / folder} were made "
                                    "from earlier weights of this run; run that command again to redraw them."))
    for compare_dir, comparison in _comparisons(run_dir):
        sections.append(_compare_section(compare_dir, comparison, files))
    sections.append(Section("Model", "model", "Layers, output shapes, parameters and the input square each unit sees, "
                            "as a graph (arrows from the layers each reads: branches and joins) and as a table.",
                            folded=True)
                    .figure(graph_figure.layer_graph(o.layers), "the layer graph", wide=True)
                    .table(["layer", "type", "output", "params", "receptive field", "jump"],
                           [[r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", r.field.size,
                             r.field.jump or "-"] for r in rows], numeric_from=3))
    sections.append(Section("Configuration", "config", "The resolved config this run was trained with (config.json).",
                            folded=True)
                    .pairs([(f"{section}.{name}", value) for section, fields in config.to_dict().items()
                            for name, value in fields.items()]))
    if files.left_out:
        sections.append(Section("Files left out", "left-out", "Files in the run that were not inlined: convlens "
                                "inlines only regular PNG files inside their folder, never through a link.")
                        .table(["file", "why"], [list(f) for f in files.left_out], numeric_from=2))
        log(f"left out {len(files.left_out)} file(s) that are not plain PNGs inside the run, e.g. "
            f"{files.left_out[0][0]} ({files.left_out[0][1]}); the report lists them")
    page = render(f"convlens report: {run_dir.name}", f"{config.model.model} on {config.data.dataset}, {run_dir}",
                  cards, sections)
    path = Path(out) if out else run_dir / runs.REPORT
    runs.atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def _test_section(run_dir: Path, o: Run, metrics: dict, files: Inlined) -> Section:
    s = Section("Test set", "test", f"{len(o.test_labels):,} test images of {metrics['dataset']}; most confused "
                "(true→predicted): " + ", ".join(f"{p['true']}→{p['pred']} ({p['count']})"
                                                 for p in metrics["most_confused"][:5]) + ".")
    s.table(["class", "accuracy", "images"], [[name, f"{a:.2%}", int((o.test_labels == k).sum())]
                                             for k, (name, a) in enumerate(metrics["per_class_accuracy"].items())])
    plots = run_dir / runs.PLOTS
    s.figure(files.drawn_unless_safe(run_dir, plots / runs.CONFUSION,
                                     lambda: figures.confusion(metrics["confusion_matrix"], o.class_names)),
             "confusion matrix (rows: true class)")
    if os.path.lexists(plots / runs.MISCLASSIFIED):
        files.figure(s, run_dir, plots / runs.MISCLASSIFIED, "misclassified: predicted (true)", wide=True)
    return s


def _maps_section(o: Run) -> Section:
    picked = [int(torch.nonzero(o.test_labels == c).flatten()[0]) for c in SAMPLE_CLASSES
              if c < len(o.class_names) and (o.test_labels == c).any()]
    s = Section("Feature maps", "maps", "Every map of every layer for the first test image of two classes, "
                "one colour range per layer so strengths compare (convlens maps draws any images).")
    maps = feature_maps(o.model, o.test_inputs[picked], o.layers.map_layers)
    titles = [f"#{i}: {o.class_names[o.test_labels[i]]}" for i in picked]
    for layer, m in track(maps.items(), "drawing feature maps of sample images"):
        s.figure(views.feature_map_figure(o.test_images[picked], m, layer, titles), layer, wide=True)
    return s


def _kernel_section(o: Run) -> Section:
    first = o.layers.convs[0]
    weight, _ = filters.conv_weight(o.model, first)
    s = Section("First-layer kernels", "kernels-first", f"The learned {first} kernels, red positive, blue negative.")
    if weight.shape[1] in (1, 3):
        return s.figure(views.first_kernels_figure(weight, first), f"{first} kernels")
    return s.figure(views.deep_kernels_figure(weight, filters.kernel_norms(weight), first), f"{first} kernel norms")


def _artifact_section(folder: str, title: str, intro: str, pngs: list[Path], run_dir: Path,
                      files: Inlined) -> Section:
    s = Section(title, folder, intro, folded=True)
    captions = {png.name: _caption(png, folder) for png in pngs}
    index = runs.read_json(run_dir / folder / "errors.json") if folder == "errors" and (
        run_dir / folder / "errors.json").is_file() else None
    if index:  # most frequent error first, as written
        written = {index.get("overview"): "every (true, predicted) pair at a glance: its surest mistake"} | {
            p["page"]: f"true {p['true_name']}, predicted {p['predicted_name']}: {p['count']} images"
            for p in index["pairs"]}
        captions = written | {name: c for name, c in captions.items() if name not in written}
        order = {name: k for k, name in enumerate(captions)}
        pngs = sorted(pngs, key=lambda png: order[png.name])
    pngs = sorted(pngs, key=lambda png: not png.stem.endswith("_overview"))  # top's and errors' index first
    for png in pngs:
        files.figure(s, run_dir, png, captions[png.name], wide=True)
    for path in sorted((run_dir / folder).glob("explain_*.json")) if folder == "explain" else []:
        _explain_text(s, runs.read_json(path))
    if folder == "oip" and (run_dir / folder / "oip.json").is_file():
        _oip_table(s, runs.read_json(run_dir / folder / "oip.json"))
    if index:
        s.table(["true", "predicted", "images", "test indices", "mean p(predicted)"],
                [[p["true_name"], p["predicted_name"], p["count"], ", ".join(map(str, p["indices"][:12]))
                  + (" ..." if p["count"] > 12 else ""),
                  f"{sum(p['p_predicted']) / p['count']:.2f}" if "p_predicted" in p else "-"] for p in index["pairs"]],
                numeric_from=2)
    if folder == "probe" and (run_dir / folder / "probe.json").is_file():
        layers = runs.read_json(run_dir / folder / "probe.json")["layers"]
        s.table(["layer", "features", "linear probe", "nearest centroid"],
                [[n, f"{r['features']:,}", f"{r['linear']:.2%}", f"{r['centroid']:.2%}"] for n, r in layers.items()])
    return s


def _explain_text(s: Section, found: dict) -> None:
    """The numbers an attribution figure cannot show: IG's completeness, and the sanity check's verdicts."""
    for towards, methods in found["towards"].items():
        if "relative_delta" in (ig := methods.get("ig", {})):
            s.text(f"Image {found['index']}, integrated gradients towards {towards}: the pixels' attributions add "
                   f"up to the logit's rise from a black image ({ig['completeness_gap']:.3f}) within "
                   f"{ig['relative_delta']:.1%}.")
    for method, verdict in found.get("sanity", {}).get("verdicts", {}).items():
        s.text(f"Image {found['index']}, sanity check of {method}: {verdict}.")


def _oip_table(s: Section, found: dict) -> None:
    """Per layer searched: how many OIPs beat the best test image, and which maps never fired, and why."""
    s.table(["layer", "maps", "beat the best test image", "fired from the start", "never fired", "seconds"],
            [[layer, v["maps"], f"{v['share_beating_test']:.0%}", "-" if layer == "logits" else v["fired_from_start"],
              "-" if layer == "logits" else ", ".join(str(d["map"]) for d in v["never_fired"]) or "none",
              f"{v['seconds']:.1f}"] for layer, v in found["layers"].items()])
    for layer, v in found["layers"].items():
        for dead in v["never_fired"]:
            s.text(f"{layer} map {dead['map']} never fired: {dead['reason']}")


def _caption(png: Path, folder: str) -> str:
    """Return a figure's caption from its file name: maps_conv3_4_vs_9.png -> 'conv3, 4 vs 9'."""
    words = png.stem.removeprefix(f"{folder}_").replace("_vs_", " vs ").split("_")
    return ", ".join(w for w in words if w) + f" ({png.name})"


def _comparisons(run_dir: Path) -> list[tuple[Path, dict]]:
    """Return (folder, compare.json content) of the sibling compare folders that name this run."""
    mine = run_dir.resolve()
    found = []
    for path in sorted(run_dir.resolve().parent.glob("compare-*/compare.json")):
        if path.parent.is_symlink():
            continue  # a linked folder may hold anything; only real sibling comparisons are shown
        try:
            report = json.loads(read_inside(path.parent, path, MAX_INLINED_PNG))
            named = report["runs"].values()
        except (Refused, ValueError, KeyError, AttributeError):
            continue  # an unreadable comparison is left out, not fatal to the report
        if any(Path(p).resolve() == mine for p in named):
            found.append((path.parent, report))
    return found


def _partner_share(layer: dict) -> float:
    # compare.json files written before share_with_partner held the same share as share_at_least_0.8.
    return layer["share_with_partner"] if "share_with_partner" in layer else layer["share_at_least_0.8"]


def _compare_section(folder: Path, report: dict, files: Inlined) -> Section:
    s = Section(f"Comparison: {folder.name}", folder.name, "convlens compare: maps matched one to one by activation "
                f"correlation; mean matched r / share with a partner (r >= {PARTNER_R}) / same order, per layer, over "
                "maps live in both runs; and prediction agreement.")
    layers = list(next(iter(report["pairs"].values()))["layers"])
    rows = [[pair] + [f"{v['mean_matched_correlation']:.2f} / {_partner_share(v):.0%} / "
                      f"{'yes' if v['same_order'] else 'no'}" for v in p["layers"].values()]
            + [f"{p['prediction_agreement']:.2%}"] for pair, p in report["pairs"].items()]
    s.table(["pair"] + layers + ["agreement"], rows, numeric_from=1)
    for png in sorted(folder.glob("*.png")):
        kind, _, pair = png.stem.partition("_")
        what = COMPARE_FIGURES.get(kind, kind)
        files.figure(s, folder, png, f"{what}: {pair.replace('_vs_', ' vs ')}" if pair else what, wide=True)
    return s


# What each figure of `convlens compare` shows, by the first word of its file name (jobs/compare.py names them).
COMPARE_FIGURES = {"kernels": "conv1 kernels matched one to one, best first", "cka": "linear CKA between every "
                   "pair of layers", "matched": "matched correlations per conv layer, beside an untrained network",
                   "oips": "OIPs of matched maps, most alike first"}
