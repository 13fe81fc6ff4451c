"""One run, held open for the live page: analyse an image, pick test images, look up a map's OIP and top inputs.

Everything returned is plain JSON-able data; maps travel as uint8 bytes (base64), one block per
layer, so a whole network's maps for one image are about 60 kB instead of a megabyte of floats.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pybase64
import torch
from PIL import Image

from ..errors import UserError
from ..inspection.hooks import capture
from ..runs import Run, load_run
from ..speed import images_to_device
from ..training import predict
from .preprocess import PREPROCESSORS, decode_colour, decode_image, preprocessor_for, to_uint8
from .top_inputs import TopInputSearch

ATTRIBUTION_STEPS = 4  # integrated-gradients steps for the live overlay: maps correlate 0.998 (median, 100 test digits) with 64 steps; 8 steps cost 2.4 ms more
TOP_INPUTS = 8  # real test images shown per map


def b64(array: np.ndarray | torch.Tensor) -> str:
    """Return the raw bytes of an array as base64 text.

    pybase64's SIMD encoder: one image's maps of `simple` (37.5 kB) in 4 us, where the base64 module
    took 56 us, a seventh of the model thread's time per frame (2-core AMD EPYC, AVX2).
    """
    data = array.numpy() if isinstance(array, torch.Tensor) else array
    return pybase64.b64encode_as_string(np.ascontiguousarray(data).data)


def png_data_url(image_u8: torch.Tensor) -> str:
    """Return a uint8 image (H, W) as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(image_u8.numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + pybase64.b64encode_as_string(buffer.getbuffer())


@dataclass(frozen=True)
class Prepared:
    """One image ready for the model: uint8 (C, H, W) or (H, W), when its request began, and what its answer adds.

    `attribution` False skips the integrated-gradients overlay, about two thirds of an analysis: the
    page asks for it when the pen lifts, not for every frame of a stroke.
    """

    image: torch.Tensor
    started: float
    extra: dict = field(default_factory=dict)
    attribution: bool = True


class LiveRun:
    """A trained run with its test set, ready to answer the page's requests.

    Forward hooks are attached to the one shared model during a request, so requests on a run are
    serialised by a lock; on 2 cores that is also the fastest order to run them in.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        self.run: Run = load_run(self.path)
        self.model = self.run.model
        # Every map layer, then the dense layers and the logits, which the page draws as bars.
        self.layers = self.run.layers.map_layers + self.run.layers.names("dense", "logits")
        self.lock = threading.Lock()
        self._warm_up()

    def _warm_up(self) -> None:
        # The first analysis pays for Captum's import, PIL's PNG plugin and oneDNN's kernel choice
        # (measured: 240-350 ms against 30 ms); pay it when the run opens, not on the first stroke.
        canvas = Image.new("L", (140, 140))
        canvas.paste(255, (65, 20, 75, 120))  # a thick vertical stroke
        self.run.dataset  # noqa: B018 - the test set, read once, checked against the model's input shape
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        self.analyse_upload(buffer.getvalue())
        if self.run.layers.input_shape[0] == 1:  # the pad draws grey digits
            self.analyse_drawing(canvas.tobytes(), 140, 140)

    @property
    def dataset(self):
        return self.run.dataset

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.class_names

    @cached_property
    def test_predictions(self) -> torch.Tensor:
        """The model's class for every test image, computed as `convlens eval` does."""
        with self.lock:
            return predict(self.model, self.dataset.test_images).argmax(1)

    @cached_property
    def top_inputs(self) -> TopInputSearch:
        """The background search for each map's strongest test images; `info` starts it, as the page opens."""
        return TopInputSearch(self.model, self.run.test_inputs, self.run.layers.map_layers, TOP_INPUTS, self.lock)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of each layer; a vector of N units is (N, 1, 1)."""
        return {name: (*self.run.layers[name].output_shape, 1, 1)[:3] for name in self.layers}

    def info(self) -> dict:
        """Return what the page needs to lay itself out: classes, layers and their shapes, what exists."""
        metrics = self.run.metrics or {}
        self.top_inputs.start()  # the user draws first: the top images are ready by the first hover
        return {
            "name": self.name,
            "dataset": self.run.config.data.dataset,
            "model": self.run.config.model.model,
            "test_accuracy": metrics.get("test_accuracy"),
            "unfinished": self.run.unfinished,
            "classes": list(self.class_names),
            "test_size": len(self.dataset.test_labels),
            "preprocess": preprocessor_for(self.run.config.data.dataset),
            "input_shape": list(self.run.layers.input_shape),
            "layers": [{"name": n, "channels": c, "height": h, "width": w, "has_oips": self.run.has_oips(n),
                        "units": not self.run.layers[n].is_map} for n, (c, h, w) in self.layer_shapes.items()],
            "graph": self.graph(),
        }

    def graph(self) -> list[dict]:
        """Every layer as a node of the layer graph (graph_figure.graph_layout's column and row), with the layers
        it reads, its shape, parameters and receptive field: the page draws it, and a click opens the maps."""
        from ..draw.graph_figure import graph_layout

        table, places = self.run.layers, graph_layout(self.run.layers)
        nodes = [{"name": "input", "kind": "input", "inputs": [], "shape": list(table.input_shape), "params": 0,
                  "field": 1}]
        nodes += [{"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs or ("input",)),
                   "shape": list(layer.output_shape), "params": layer.params, "field": layer.field.size}
                  for layer in table]
        return [node | {"column": places[node["name"]][0], "row": places[node["name"]][1]} for node in nodes]

    def prepare_upload(self, data: bytes) -> Prepared:
        """Decode a PNG/JPEG (a photo or a saved drawing) and preprocess it like the data set."""
        started = time.perf_counter()
        channels, height, width = self.run.layers.input_shape
        if channels == 3:  # a colour model sees the picture as it is, resized to its input
            return Prepared(decode_colour(data, (height, width)), started)
        return self._prepare_pixels(decode_image(data), started)

    def prepare_drawing(self, data: bytes, width: int, height: int, attribution: bool = True) -> Prepared:
        """Preprocess the pad's raw grey bytes (bright ink on black) like the data set.

        The pad sends raw bytes rather than a PNG: encoding one in the browser took 3-30 ms per stroke.
        """
        started = time.perf_counter()
        if self.run.layers.input_shape[0] != 1:
            raise UserError("this model takes colour images; upload or drop a PNG or JPEG instead of drawing")
        if len(data) != width * height:
            raise UserError(f"a {width}x{height} drawing is {width * height} bytes; the body has {len(data)}")
        pixels = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).reshape(height, width) / np.float32(255.0))
        return replace(self._prepare_pixels(pixels, started), attribution=attribution)

    def prepare_test_image(self, index: int) -> Prepared:
        """A test image as it is stored (no preprocessing), with its index and true class."""
        self.run.check_test_index(index)
        return Prepared(self.dataset.test_images[index], time.perf_counter(),
                        {"index": index, "label": int(self.dataset.test_labels[index])})

    def _prepare_pixels(self, pixels: torch.Tensor, started: float) -> Prepared:
        side = self.run.layers.input_shape[-1]
        prepared = PREPROCESSORS[preprocessor_for(self.run.config.data.dataset)](pixels, size=side)
        return Prepared(to_uint8(prepared), started)

    def analyse_upload(self, data: bytes) -> dict:
        return self.analyse([self.prepare_upload(data)])[0]

    def analyse_drawing(self, data: bytes, width: int, height: int, attribution: bool = True) -> dict:
        return self.analyse([self.prepare_drawing(data, width, height, attribution)])[0]

    def analyse_test_image(self, index: int) -> dict:
        return self.analyse([self.prepare_test_image(index)])[0]

    def analyse(self, images: list[Prepared]) -> list[dict]:
        """Return, per image: probabilities, every map of every layer, the attribution for the predicted class
        (None where the image's request did not ask for it).

        The images go through the model as one batch: under load the server gathers the requests that
        arrive together (web/batching.py); in batches of 16 an image of `simple` took 2.0 ms, alone 4.4 ms.
        """
        from ..explain.methods import attribute  # Captum loads on the first analysis, not at import

        x = images_to_device(torch.stack([p.image for p in images]), torch.device("cpu"))  # (B, C, H, W)
        x = x.contiguous(memory_format=torch.channels_last)  # the weights' layout: oneDNN need not reorder
        with self.lock:
            with torch.no_grad(), capture(self.model, self.layers) as out:
                logits = self.model(x)
                maps = {name: out[name] for name in self.layers}  # (B, C, H, W) each, or (B, N) units
            predicted = logits.argmax(1)
            wanted = [i for i, p in enumerate(images) if p.attribution]
            overlays = dict(zip(wanted, attribute(self.model, x[wanted], predicted[wanted], "ig", steps=ATTRIBUTION_STEPS,
                                                  completeness=False).maps)) if wanted else {}
        probabilities = torch.softmax(logits, 1).tolist()
        layers = [(_encode_maps if m.dim() == 4 else _encode_units)(name, m)  # per layer, one entry per image
                  for name, m in maps.items()]
        results = []
        for i, p in enumerate(images):
            results.append({
                "image": b64(p.image),
                "probabilities": [round(v, 5) for v in probabilities[i]],
                "predicted": int(predicted[i]),
                "layers": [layer[i] for layer in layers],
                "attribution": _encode_signed(overlays[i]) if i in overlays else None,
                "compute_ms": round((time.perf_counter() - p.started) * 1000, 2),
            } | p.extra)
        return results

    def pick_test_image(self, pick: str, label: int | None, generator: torch.Generator) -> int:
        """Return a test-set index: at random, at random among a class, or among the misclassified."""
        labels = self.dataset.test_labels
        if pick == "random":
            pool = torch.arange(len(labels))
        elif pick == "class":
            if label is None:
                raise UserError(f"label must be a class between 0 and {len(self.class_names) - 1}")
            label = self.run.class_index(label)
            pool = torch.nonzero(labels == label).flatten()
        else:
            pool = torch.nonzero(self.test_predictions != labels).flatten()
        if len(pool) == 0:
            raise UserError(f"no test image fits pick={pick}")
        return int(pool[torch.randint(len(pool), (1,), generator=generator)])

    def map_detail(self, layer: str, map_index: int) -> dict:
        """Return a map's OIP (when `convlens oip` stored one) and the test images that drive it hardest.

        While the search for those images is still going, "top" is None and "searched" says how far it is.
        """
        if layer not in self.run.layers.map_layers:
            raise UserError(f"unknown map layer '{layer}'; map layers are {', '.join(self.run.layers.map_layers)}")
        channels = self.layer_shapes[layer][0]
        if not 0 <= map_index < channels:
            raise UserError(f"map must be between 0 and {channels - 1} for {layer}")
        search = self.top_inputs
        top = search.of(layer)
        images, labels = self.dataset.test_images, self.dataset.test_labels
        return {
            "layer": layer,
            "map": map_index,
            "oip": self._oip(layer, map_index),
            "searched": {"done": search.done, "total": search.total},
            "top": None if top is None else [
                {"index": int(i), "label": self.class_names[int(labels[i])], "activation": round(float(v), 4),
                 "image": png_data_url(images[i])}
                for i, v in zip(top.indices[map_index], top.values[map_index])],
        }

    def _oip(self, layer: str, map_index: int) -> dict | None:
        saved = self.run.saved_oips(layer)
        found = saved.of(map_index) if saved else None
        if found is None:
            return None
        image, activation = found
        return {"image": png_data_url(to_uint8(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0))),
                "activation": round(activation, 4)}


def _encode_maps(name: str, maps: torch.Tensor) -> list[dict]:
    """Return each image's maps of a layer (B, C, H, W) as uint8 scaled by that image's peak in the layer, so
    maps compare within a layer; the arithmetic is one pass for the whole batch, and each image is a numpy
    view of it (indexing the torch tensor per image cost 5 us a layer)."""
    _, c, h, w = maps.shape
    peaks = maps.amax((1, 2, 3))  # (B,)
    scales = 255 / torch.where(peaks > 0, peaks, torch.ones_like(peaks))[:, None, None, None]  # an all-zero layer stays 0
    scaled = maps.clamp(min=0).mul_(scales).round_().to(torch.uint8).contiguous().numpy()  # (B, C, H, W)
    map_peaks = np.round(maps.amax((2, 3)).numpy().astype(np.float64), 4).tolist()  # (B, C), 4 decimals
    return [{"name": name, "channels": c, "height": h, "width": w, "peak": round(peak, 5),
             "map_peaks": map_peaks[i], "data": b64(scaled[i])}
            for i, peak in enumerate(peaks.tolist())]


def _encode_units(name: str, units: torch.Tensor) -> list[dict]:
    """Return each image's units of a dense layer or the logits (B, N) as int8 in [-127, 127], scaled by that
    image's largest magnitude in the layer (its "peak"): the page draws them as bars up and down."""
    return [{"name": name, "channels": units.shape[1], "height": 1, "width": 1, "units": True} | _encode_signed(u)
            for u in units]


def _encode_signed(attribution: torch.Tensor) -> dict:
    """Return a signed map (H, W) or vector as int8 in [-127, 127] scaled by its largest magnitude, its "peak"."""
    peak = float(attribution.abs().max())
    scaled = attribution / peak * 127 if peak > 0 else torch.zeros_like(attribution)
    return {"peak": round(peak, 6), "data": b64(scaled.round().to(torch.int8).contiguous())}
