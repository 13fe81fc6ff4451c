"""The inspection commands: pick images, compute with convlens.inspect, draw with report, write PNG + JSON.

Everything goes under the run folder (RUN/maps, RUN/kernels, ...) unless `out` says otherwise.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import torch

from . import runs
from .data import load_dataset
from .errors import UserError
from .inspect import filters
from .inspect.hooks import conv_layers, map_layers
from .inspect.maps import class_patterns, feature_maps, field_geometry, top_activations
from .inspect.probe import probe
from .report import figures
from .report import inspect_figures as views
from .speed import images_to_device
from .training import evaluate, predict

TOP_MAPS_PER_PAGE = 8


class Opened:
    """A run with its model, its test data as uint8 and as model input, and the output folder.

    The data is read on first use, so a job that needs only the weights (kernels) never loads it.
    """

    def __init__(self, run_dir, out, sub: str):
        self.run = runs.load_run(run_dir)
        self.out = Path(out) if out else Path(run_dir) / sub

    @property
    def model(self):
        return self.run.model

    @cached_property
    def dataset(self):
        return load_dataset(self.run.config.data.dataset)

    @property
    def images_u8(self) -> torch.Tensor:
        return self.dataset.test_images

    @property
    def labels(self) -> torch.Tensor:
        return self.dataset.test_labels

    @property
    def names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @cached_property
    def x(self) -> torch.Tensor:
        return images_to_device(self.images_u8, torch.device("cpu"))  # (N, 1, 28, 28)

    def class_index(self, text: str) -> int:
        """Return a class index from its number or its name."""
        if text.isdigit() and int(text) < len(self.names):
            return int(text)
        if text in self.names:
            return self.names.index(text)
        raise UserError(f"unknown class '{text}'; classes are 0-{len(self.names) - 1} ({', '.join(self.names)})")


def select_images(o: Opened, images: str | None, index: str | None) -> list[int]:
    """Return test-set indices from '4:3,9:1' (the first three 4s and the first 9) or '0,17,42'."""
    if images and index:
        raise UserError("give --images or --index, not both")
    if index:
        if not re.fullmatch(r"\d+(,\d+)*", index):
            raise UserError(f"--index '{index}' must be comma-separated test-set indices, e.g. 0,17,42")
        picked = [int(i) for i in index.split(",")]
        if max(picked) >= len(o.labels):
            raise UserError(f"--index {max(picked)} is out of range; the test set has {len(o.labels)} images")
        return picked
    picked = []
    for part in (images or "4:1").split(","):
        m = re.fullmatch(r"([^:]+):(\d+)", part.strip())
        if not m:
            raise UserError(f"--images '{part}' must be CLASS:COUNT, e.g. 4:3,9:1")
        cls, count = o.class_index(m[1]), int(m[2])
        found = torch.nonzero(o.labels == cls).flatten()[:count].tolist()
        if len(found) < count:
            raise UserError(f"the test set has only {len(found)} images of class {o.names[cls]}")
        picked += found
    return picked


def maps_job(run_dir, images=None, index=None, layers=None, cmap="gray", scale="layer", out=None) -> list[Path]:
    """Draw every map of each layer for the chosen test images side by side; return the PNGs written."""
    if cmap not in views.CMAPS or scale not in views.SCALES:
        raise UserError(f"--cmap must be one of {', '.join(views.CMAPS)} and --scale one of {', '.join(views.SCALES)}")
    o = Opened(run_dir, out, "maps")
    picked = select_images(o, images, index)
    layers = layers or map_layers(o.model)
    maps = feature_maps(o.model, o.x[picked], layers)
    pred = predict(o.model, o.images_u8[picked]).argmax(1).tolist()
    titles = [f"#{i}: {o.names[o.labels[i]]} (pred {o.names[p]})" for i, p in zip(picked, pred)]
    written = []
    for layer, m in maps.items():
        fig = views.feature_map_figure(o.images_u8[picked], m, layer, titles, cmap=cmap, scale=scale)
        written.append(figures.save(fig, o.out / f"maps_{layer}.png"))
    runs.write_json(o.out / "maps.json", {
        "images": picked, "labels": [int(o.labels[i]) for i in picked], "predictions": pred,
        "layers": {layer: {"shape": list(m.shape[1:]), "max_per_map": m.amax((2, 3)).tolist()} for layer, m in maps.items()},
    })
    return written


def kernels_job(run_dir, layer=None, out=None) -> list[Path]:
    """Draw a conv layer's kernels: every kernel for one input channel, else norms and the strongest slices."""
    o = Opened(run_dir, out, "kernels")
    layer = layer or conv_layers(o.model)[0]
    weight, bias = filters.conv_weight(o.model, layer)
    if weight.shape[1] == 1:
        fig = views.conv1_kernels_figure(weight, layer)
    else:
        fig = views.deep_kernels_figure(weight, filters.kernel_norms(weight), layer)
    path = figures.save(fig, o.out / f"kernels_{layer}.png")
    runs.write_json(o.out / f"kernels_{layer}.json", {"layer": layer, "shape": list(weight.shape),
                                                       "norms": filters.kernel_norms(weight).tolist()})
    return [path]


def patterns_job(run_dir, layer=None, classes=None, out=None) -> list[Path]:
    """Write class-mean activations, never-firing maps and, for a pair of classes, the separating maps."""
    o = Opened(run_dir, out, "patterns")
    layer = layer or conv_layers(o.model)[-1]
    pair = [o.class_index(c) for c in classes.split(",")] if classes else None
    if pair is not None and (len(pair) != 2 or pair[0] == pair[1]):
        raise UserError(f"--classes takes two different classes, e.g. 4,9 (got '{classes}')")
    p = class_patterns(o.model, o.x, o.labels, layer, num_classes=len(o.names))
    written = [figures.save(views.class_activation_figure(p.mean_activation, p.fire_rate, o.names, layer),
                            o.out / f"patterns_{layer}.png")]
    report = {
        "layer": layer,
        "mean_activation": p.mean_activation.tolist(),
        "fire_rate": p.fire_rate.tolist(),
        "never_fires": {o.names[k]: maps for k, maps in p.never_fires().items()},
        "pairs": {},
    }
    if pair:
        a, b = pair
        d = p.separation(a, b)
        ranked = torch.argsort(d.abs(), descending=True)
        report["pairs"][f"{o.names[a]},{o.names[b]}"] = [{"map": int(m), "effect_size": float(d[m])} for m in ranked]
        fig = views.separation_figure(d, p.mean_maps, a, b, o.names, layer)
        written.append(figures.save(fig, o.out / f"patterns_{layer}_{a}_vs_{b}.png"))
    # One patterns.json per folder, keyed by layer, so patterns of several layers sit together.
    path = o.out / "patterns.json"
    merged = runs.read_json(path) if path.exists() else {}
    runs.write_json(path, merged | {layer: report})
    return written


def top_job(run_dir, layer=None, k=9, out=None) -> list[Path]:
    """Draw, for every map, the k test images that drive it hardest, as field crops and outlined wholes."""
    o = Opened(run_dir, out, "top")
    layer = layer or conv_layers(o.model)[0]
    top = top_activations(o.model, o.x, layer, k=k)
    geometry = field_geometry(o.model, layer)
    written = []
    maps = list(range(top.indices.shape[0]))
    for page, start in enumerate(range(0, len(maps), TOP_MAPS_PER_PAGE)):
        chunk = maps[start : start + TOP_MAPS_PER_PAGE]
        fig = views.top_figure(o.images_u8, top, geometry, chunk, layer)
        written.append(figures.save(fig, o.out / f"top_{layer}_{page:02d}.png"))
    runs.write_json(o.out / f"top_{layer}.json", {
        "layer": layer, "receptive_field": {"size": geometry[0], "jump": geometry[1], "offset": geometry[2]},
        "indices": top.indices.tolist(), "values": top.values.tolist(), "positions": top.positions.tolist(),
    })
    return written


def probe_job(run_dir, layers=None, train_size=10000, out=None) -> tuple[list[Path], dict]:
    """Fit linear and nearest-centroid probes on each layer; return the plot and the accuracies."""
    o = Opened(run_dir, out, "probe")
    children = [n for n, _ in o.model.named_children()]
    layers = layers or [n for n in children if not n.startswith("dropout")]
    if not 1 <= train_size <= len(o.dataset.train_labels):
        raise UserError(f"--train-size must be between 1 and {len(o.dataset.train_labels)}")
    train_x = images_to_device(o.dataset.train_images[:train_size], torch.device("cpu"))
    result = probe(o.model, train_x, o.dataset.train_labels[:train_size], o.x, o.labels, layers, len(o.names))
    accuracy = evaluate(o.model, o.images_u8, o.labels)["accuracy"]
    runs.write_json(o.out / "probe.json", {"train_size": train_size, "model_accuracy": accuracy, "layers": result})
    return [figures.save(views.probe_figure(result, accuracy), o.out / "probe.png")], result


def filters_demo_job(run_dir, index=0, out=None) -> list[Path]:
    """Apply classic kernels and the learned first-layer kernels to one test image, side by side."""
    o = Opened(run_dir, out, "filters")
    if not 0 <= index < len(o.labels):
        raise UserError(f"--image {index} is out of range; the test set has {len(o.labels)} images")
    first = conv_layers(o.model)[0]
    weight, _ = filters.conv_weight(o.model, first)
    if weight.shape[1] != 1:
        raise UserError(f"{first} has {weight.shape[1]} input channels; the demo needs a conv on the image itself")
    image = o.x[index : index + 1]
    classic = filters.classic_kernels()
    fig = views.filters_demo_figure(o.x[index, 0], list(filters.CLASSIC_KERNELS), classic,
                                    filters.apply_kernels(image, classic), weight, filters.apply_kernels(image, weight))
    return [figures.save(fig, o.out / f"filters_demo_{index}.png")]
