"""The run folder: its layout, declared once here, and the one `Run` every command opens it through.

    runs/NAME/
      config.json             the fully resolved RunConfig
      graph.json              an imported model's layers and where it came from (convlens import)
      history.json            one entry per finished epoch
      model.safetensors       weights only, with the config in its metadata
      checkpoint.safetensors  weights + optimizer state + the epoch it ends, for --resume
      metrics.json            test-set evaluation
      plots/                  PNGs of training and evaluation
      report.html             everything above and every inspection, offline
      metrics-DATASET.json    an evaluation on another data set (eval --dataset), beside the run's own
      maps/ kernels/ oip/ ... what each inspection wrote (INSPECTIONS), each with its source.json
      .lock                   only while a process writes the folder (storage.folder_lock): its PID

No other module spells a file name of this folder: they ask `Run` or use the names below.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import UserError
from . import schemas
from .layers import LayerTable, layer_table
from .importers.graph import GraphNet, checked_graph
from .models import build_model
from .run_jobs import RunJobs
from .speed import for_inference, images_to_device
from .storage import (WriteError, atomic_write, checked, file_sha256, load_tensors, read_json, save_tensors, tensor_shapes,
                      write_json)

__all__ = ["Run", "load_run", "read_config", "WriteError", "atomic_write", "read_json", "write_json", "save_tensors",
           "load_tensors", "save_weights", "save_checkpoint", "load_checkpoint"]

CONFIG, HISTORY, METRICS, GRAPH = "config.json", "history.json", "metrics.json", "graph.json"
WEIGHTS, CHECKPOINT = "model.safetensors", "checkpoint.safetensors"
PLOTS, REPORT = "plots", "report.html"
CURVES, CONFUSION, MISCLASSIFIED = "curves.png", "confusion.png", "misclassified.png"  # inside plots/
# Inside each inspection's folder: the sha256 of the weights its files came from. Derived files
# (these folders, metrics.json) made from other weights (a resumed or retrained run) are stale.
SOURCE = "source.json"
# The sub-folder each inspection writes into unless told otherwise, in the order of the articles.
INSPECTIONS = ("maps", "kernels", "filters", "patterns", "top", "probe", "oip", "explain", "errors")


def evaluation_files(dataset: str, own: str) -> tuple[str, str, str]:
    """Return the (metrics, confusion plot, misclassified plot) names of an evaluation on `dataset` of a run of `own`.

    An evaluation on another data set than the run's own goes beside the run's own, never over it.
    """
    if dataset == own:
        return METRICS, CONFUSION, MISCLASSIFIED
    tag = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset).strip("-")[:80]
    return f"metrics-{tag}.json", f"confusion-{tag}.png", f"misclassified-{tag}.png"


def oip_tensors(layer: str) -> str:
    """Return the file name, inside the oip folder, of a layer's saved OIP images."""
    return f"oip_{layer}.safetensors"


def save_weights(path: Path, model: nn.Module, config: RunConfig) -> None:
    """Write the model's weights to a safetensors file with the config in its metadata."""
    save_tensors(path, model.state_dict(), {"config": json.dumps(config.to_dict())})


def load_weights_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy tensors into the model; a mismatch with the model's layers is a UserError naming it."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"{source} does not fit the model in config.json ({first})") from None


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[dict],
                    config: RunConfig) -> None:
    """Write weights, optimizer state and the history of the finished epochs, atomically.

    The checkpoint alone can rebuild model.safetensors and history.json (a full disk may have cut
    their writing short).
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    meta = {"epoch": str(len(history)), "history": json.dumps(history), "config": json.dumps(config.to_dict())}
    save_tensors(run_dir / CHECKPOINT, tensors, meta)


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[dict]:
    """Restore weights and optimizer state from the run's checkpoint; return the history of its finished epochs."""
    path = run_dir / CHECKPOINT
    tensors, meta = load_tensors(path)
    load_weights_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            param = params[int(index)]
            if value.shape == param.shape:
                # Laid out as its parameter: the fused steps walk memory, not strides, so a contiguous
                # moment of a channels_last kernel would update the wrong weights.
                value = torch.empty_like(param, dtype=value.dtype).copy_(value)
            state.setdefault(int(index), {})[name] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
    epoch = int(meta.get("epoch", 0))
    if "history" in meta:
        try:
            return checked(json.loads(meta["history"]), schemas.HISTORY, f"the history in {path}")
        except json.JSONDecodeError:
            raise UserError(f"{path} holds a damaged history; train again") from None
    # A checkpoint written before it carried the history: history.json, as far as the checkpoint got.
    return (read_json(run_dir / HISTORY, schemas.HISTORY) if (run_dir / HISTORY).exists() else [])[:epoch]


def read_config(run_dir: Path) -> RunConfig:
    """Return the RunConfig stored in a run folder."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise UserError(f"{run_dir} is a file, not a run folder; to open a model trained elsewhere, make a run of it: "
                        f"convlens import {run_dir} --dataset mnist --out runs/NAME")
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    return RunConfig.from_dict(read_json(run_dir / CONFIG))


@dataclass(frozen=True)
class SavedOIPs:
    """The OIPs `convlens oip` stored for one layer: each map's strongest start."""

    index: list[int]  # the maps (or classes) searched
    images: torch.Tensor  # (M, C, H, W) in [0, 1]
    activation: torch.Tensor  # (M,) the objective each reached

    def of(self, map_index: int) -> tuple[torch.Tensor, float] | None:
        """Return (image (C, H, W), activation) of one map, or None if it was not searched."""
        if map_index not in self.index:
            return None
        row = self.index.index(map_index)
        return self.images[row], float(self.activation[row])


def parse_class_counts(text: str, what: str) -> list[tuple[str, int]]:
    """Return [(class, count)] from '4:3,9:1' (the first three 4s and the first 9)."""
    counts = []
    for part in text.split(","):
        m = re.fullmatch(r"([^:]+):(\d+)", part.strip())
        if not m:
            raise UserError(f"{what} '{part}' must be CLASS:COUNT, e.g. 4:3,9:1")
        counts.append((m[1], int(m[2])))
    return counts


class Run(RunJobs):
    """One run folder, opened once: config now; model, history, data and layer table on first use.

    The jobs that read a run are its methods too (RunJobs): `run.maps("4:3")` in a notebook shows its figures.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = read_config(self.path)

    def __repr__(self) -> str:
        """One line: what the run is and how well it does."""
        accuracy = f", test accuracy {self.metrics['test_accuracy']:.2%}" if self.metrics else ""
        epochs = len(self.history)
        what = f"imported from {self.imported['format']}" if self.imported else f"{epochs} epoch{'s' * (epochs != 1)}"
        return f"Run({self.path}: {self.config.model.model} on {self.config.data.dataset}, {what}{accuracy})"

    def _repr_html_(self) -> str:
        """In Jupyter: the line above and the run's plots (curves, confusion matrix, misclassified gallery)."""
        from .jobs import figures_html

        return figures_html(repr(self), [self.path / PLOTS / name for name in (CURVES, CONFUSION, MISCLASSIFIED)
                                         if (self.path / PLOTS / name).is_file()])

    def file(self, name: str) -> Path:
        """Return the path of a file of the folder (CONFIG, METRICS, ...)."""
        return self.path / name

    def output_folder(self, inspection: str, out: str | Path | None = None) -> Path:
        """Return where an inspection writes: `out` if given, else its sub-folder of the run."""
        return Path(out) if out else self.path / inspection

    @property
    def imported(self) -> dict | None:
        """Where an imported model came from (format, file, sha256, importer), or None for a model convlens trained."""
        return self.graph.get("source") if self.graph else None

    @cached_property
    def graph(self) -> dict | None:
        """An imported model's graph.json, checked against its weights before any module is built; None if trained."""
        if not self.file(GRAPH).is_file():
            return None
        return checked_graph(read_json(self.file(GRAPH)), tensor_shapes(self.file(WEIGHTS)), self.file(GRAPH))

    def untrained_model(self, seed: int = 0) -> nn.Module:
        """A freshly initialised model of the same architecture: eval mode, CPU, channels_last."""
        torch.manual_seed(seed)
        if self.graph:
            return for_inference(GraphNet(self.graph))
        num_classes = self.layers.layers[-1].output_shape[0]
        return for_inference(build_model(self.config.model.model, num_classes, self.config.model.input_shape))

    @cached_property
    def model(self) -> nn.Module:
        """The trained model: eval mode, CPU, channels_last."""
        tensors, _ = load_tensors(self.file(WEIGHTS))
        if self.graph:
            model = GraphNet(self.graph)
        else:  # the logits' bias has one entry per class
            num_classes = int(tensors["logits.bias"].shape[0]) if "logits.bias" in tensors else 10
            model = build_model(self.config.model.model, num_classes, self.config.model.input_shape)
        if bad := [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
            raise UserError(f"{self.file(WEIGHTS)} holds NaN or infinite values (first in {bad[0]}): the training "
                            "diverged or the file is damaged; train again with a lower lr")
        load_weights_into(model, tensors, self.file(WEIGHTS))
        return for_inference(model)

    @property
    def layers(self) -> LayerTable:
        """The model's layer table: names, kinds, shapes, parameters, receptive fields."""
        return layer_table(self.model, self.config.model.input_shape)

    @cached_property
    def history(self) -> list[dict]:
        return read_json(self.file(HISTORY), schemas.HISTORY) if self.file(HISTORY).exists() else []

    @property
    def unfinished(self) -> str | None:
        """A line saying how far an interrupted training got and how to continue it; None for a finished run."""
        planned, done = self.config.train.epochs, len(self.history)
        if self.graph or done >= planned:
            return None
        return f"unfinished: {done} of {planned} epochs trained; continue with convlens train --resume {self.path}"

    @cached_property
    def weights_sha256(self) -> str:
        """The sha256 of model.safetensors: what every derived file is stamped with."""
        return file_sha256(self.file(WEIGHTS))

    def is_current(self, stamp: str | None) -> bool:
        """Whether a derived file stamped with `stamp` came from these weights (files from before stamps count)."""
        return stamp is None or stamp == self.weights_sha256

    def inspection_is_current(self, folder: Path) -> bool:
        """Whether an inspection's folder was written from these weights."""
        source = folder / SOURCE
        return not source.is_file() or self.is_current(read_json(source, schemas.Source).get("weights_sha256"))

    @property
    def metrics(self) -> dict | None:
        """The test-set evaluation of these weights, or None (never evaluated, or evaluated before a retraining)."""
        if not self.file(METRICS).exists():
            return None
        metrics = read_json(self.file(METRICS), schemas.Metrics)
        return metrics if self.is_current(metrics.get("weights_sha256")) else None

    @cached_property
    def dataset(self) -> Dataset:
        dataset = load_dataset(self.config.data.dataset)
        if dataset.image_shape != tuple(self.config.model.input_shape):
            raise UserError(f"{self.config.data.dataset} has images of shape {dataset.image_shape}; the model of "
                            f"{self.path} takes {tuple(self.config.model.input_shape)}")
        return dataset

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def test_images(self) -> torch.Tensor:
        """The test set as stored: uint8 (N, H, W) or (N, C, H, W)."""
        return self.dataset.test_images

    @property
    def test_labels(self) -> torch.Tensor:
        return self.dataset.test_labels

    @cached_property
    def test_inputs(self) -> torch.Tensor:
        """The test set as the model takes it: float (N, C, H, W) in [0, 1]."""
        return images_to_device(self.test_images, torch.device("cpu"))

    def class_index(self, name: str | int) -> int:
        """Return a class index from its number or its name (any case)."""
        names = self.class_names
        text = str(name).strip()
        if text.isdigit() and int(text) < len(names):
            return int(text)
        lowered = [n.lower() for n in names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        close = [] if text.isdigit() else difflib.get_close_matches(text.lower(), lowered, n=1, cutoff=0.6)
        hint = f"did you mean '{names[lowered.index(close[0])]}'? " if close else ""
        raise UserError(f"unknown class '{text}'; {hint}classes are 0-{len(names) - 1} ({', '.join(names)})")

    def check_test_index(self, index: int) -> int:
        """Return a test-set index after checking it is in range."""
        if not 0 <= index < len(self.test_labels):
            raise UserError(f"test image {index} is out of range; the test set has {len(self.test_labels)} images "
                            f"(0-{len(self.test_labels) - 1})")
        return index

    def first_of_classes(self, counts: str | list[tuple[str | int, int]], what: str = "images") -> list[int]:
        """Return test-set indices: for each (class, count), the first `count` test images of that class.

        `counts` may be text: "4:3,9:1" is the first three 4s and the first 9 (`what` names it in errors).
        """
        picked = []
        for name, count in parse_class_counts(counts, what) if isinstance(counts, str) else counts:
            cls = self.class_index(name)
            found = torch.nonzero(self.test_labels == cls).flatten()[:count].tolist()
            if len(found) < count:
                raise UserError(f"the test set has only {len(found)} images of class {self.class_names[cls]}")
            picked += found
        return picked

    def test_indices(self, images: str | int | list[int]) -> list[int]:
        """Return checked test-set indices from an index, a list of them, or CLASS:COUNT text ("4:3,9:1")."""
        if isinstance(images, str):
            return self.first_of_classes(images)
        return [self.check_test_index(int(i)) for i in ([images] if isinstance(images, int) else images)]

    def oip_file(self, layer: str) -> Path:
        """Return where `convlens oip` stores a layer's OIPs in this run."""
        return self.path / "oip" / oip_tensors(layer)

    def has_oips(self, layer: str) -> bool:
        """Whether `convlens oip` stored OIPs of a layer from these weights."""
        path = self.oip_file(layer)
        return path.is_file() and self.inspection_is_current(path.parent)

    def saved_oips(self, layer: str) -> SavedOIPs | None:
        """Return the OIPs `convlens oip` stored for a layer (each map's strongest start), or None."""
        if not self.has_oips(layer):
            return None
        path = self.oip_file(layer)
        tensors, _ = load_tensors(path)
        try:
            images, activation, index = tensors["images"], tensors["activation"], tensors["index"]
        except KeyError as e:
            raise UserError(f"{path} lacks the tensor {e}; run `convlens oip` again") from None
        best = activation.argmax(1)  # (M,) the strongest of each map's K starts
        rows = torch.arange(len(best))
        return SavedOIPs(index.tolist(), images[rows, best], activation[rows, best])


def load_run(run_dir: str | Path) -> Run:
    """Return an opened run folder, its weights loaded and checked."""
    run = Run(run_dir)
    run.model  # noqa: B018 - load now: a corrupt or mismatched weights file is reported here
    return run
