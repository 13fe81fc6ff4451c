"""Training speed against a plain PyTorch loop, measured in the same process (issue 3).

Each recipe is trained for its own epochs on several seeds; a row gives the medians of training
wall time (data loading and evaluation excluded), images/s and test accuracy, and the ratio of its
time-to-99% to the plain loop's. The plain loop is what a user writes from a tutorial: a
DataLoader over a TensorDataset, batch 64, SGD with momentum, fp32, NCHW, evaluated after each
epoch until it reaches 99%.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .config import RECIPES, RunConfig
from .data import load_dataset
from .models import build_model
from .speed import cpu_description, resolve_device
from .training import evaluate, train

TARGET = 0.99


def plain_loop(dataset: str = "mnist", model: str = "simple", device: str = "cpu", max_epochs: int = 6,
               val_size: int = 5000, seed: int = 0, log=print) -> dict:
    """Train the tutorial way until the test accuracy reaches 99%; return its row."""
    dev = resolve_device(device)
    ds = load_dataset(dataset)
    (train_x, train_y), _ = ds.split(val_size)
    torch.manual_seed(seed)
    net = build_model(model, num_classes=ds.num_classes).to(dev)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(train_x.unsqueeze(1).float() / 255, train_y), batch_size=64, shuffle=True)
    seconds, reached, accuracy, epochs = 0.0, None, 0.0, 0
    for epochs in range(1, max_epochs + 1):
        net.train()
        start = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        accuracy = evaluate(net, ds.test_images, ds.test_labels, device=dev)["accuracy"]
        log(f"  plain loop epoch {epochs}: test {accuracy:.4f}, {seconds:.1f} s so far")
        if accuracy >= TARGET:
            reached = seconds
            break
    return _row("plain loop (DataLoader, bs 64, fp32)", model, epochs, [seconds], [len(train_y) * epochs / seconds],
                [accuracy], [reached])


def recipe_rows(recipe: str, seeds: int = 3, device: str = "auto", dataset: str | None = None, log=print) -> dict:
    """Train a recipe on `seeds` seeds; return its row of medians."""
    sections = {name: dict(fields) for name, fields in RECIPES[recipe].items()}
    sections.setdefault("train", {})["device"] = device
    if dataset:
        sections.setdefault("data", {})["dataset"] = dataset
    times, speeds, accuracies, reached = [], [], [], []
    for seed in range(seeds):
        sections["train"]["seed"] = seed
        config = RunConfig().replace(**sections)
        result = train(config)
        seconds = sum(h["seconds"] for h in result.history)
        accuracy = evaluate(result.model, result.dataset.test_images, result.dataset.test_labels,
                            device=resolve_device(device))["accuracy"]
        images = (len(result.dataset.train_labels) - config.data.val_size) * config.train.epochs
        times.append(seconds)
        speeds.append(images / seconds)
        accuracies.append(accuracy)
        reached.append(seconds if accuracy >= TARGET else None)
        log(f"  {recipe} seed {seed}: test {accuracy:.4f} in {seconds:.1f} s")
    return _row(recipe, config.model.model, config.train.epochs, times, speeds, accuracies, reached)


def _row(name, model, epochs, times, speeds, accuracies, reached) -> dict:
    hits = [r for r in reached if r is not None]
    # Time-to-99% over seeds: the median when most seeds reach it; otherwise it was not reached.
    t99 = statistics.median(hits) if len(hits) * 2 > len(reached) else None
    return {"recipe": name, "model": model, "epochs": epochs, "seeds": len(times),
            "seconds": statistics.median(times), "images_per_s": statistics.median(speeds),
            "test_accuracy": statistics.median(accuracies), "time_to_99": t99}


def format_table(rows: list[dict], baseline: dict) -> str:
    """Return the rows as a text table with each recipe's time-to-99% over the plain loop's."""
    head = f"{'recipe':38s} {'model':10s} {'ep':>3s} {'seeds':>5s} {'train s':>8s} {'img/s':>8s} {'test acc':>9s} {'t99 s':>7s} {'t99 ratio':>9s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        t99 = f"{r['time_to_99']:.1f}" if r["time_to_99"] else "-"
        ratio = (f"{r['time_to_99'] / baseline['time_to_99']:.3f}"
                 if r["time_to_99"] and baseline.get("time_to_99") else "-")
        lines.append(f"{r['recipe'][:38]:38s} {r['model'][:10]:10s} {r['epochs']:3d} {r['seeds']:5d} {r['seconds']:8.1f} "
                     f"{r['images_per_s']:8.0f} {r['test_accuracy']:9.4f} {t99:>7s} {ratio:>9s}")
    return "\n".join(lines)


def device_name(device: str) -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return cpu_description()


