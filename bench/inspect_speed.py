"""Inspection speed on the CPU: prints a table of compute times against the targets of issue 4.

usage: python bench/inspect_speed.py [RUN]   (default: trains `simple` for one epoch first)
Times are compute only (model loaded, data in memory), the median of 5 repeats.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import torch

from convlens import RunConfig, load_dataset, load_run, train
from convlens.inspection.maps import class_patterns, feature_maps, top_activations
from convlens.speed import images_to_device


def median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up: first calls pick oneDNN kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    if len(sys.argv) > 1:
        run_dir = sys.argv[1]
    else:
        run_dir = tempfile.mkdtemp() + "/run"
        train(RunConfig().replace(train={"epochs": 1}), out=run_dir)
    model = load_run(run_dir).model
    ds = load_dataset("mnist")
    x = images_to_device(ds.test_images, torch.device("cpu"))
    rows = [
        ("all maps of all layers, 1 image", 0.100, median_seconds(lambda: feature_maps(model, x[:1]))),
        ("class patterns conv3, 10,000 images", 5.0,
         median_seconds(lambda: class_patterns(model, x, ds.test_labels, "conv3"), repeats=3)),
        ("top-9 conv2, 10,000 images", 10.0, median_seconds(lambda: top_activations(model, x, "conv2"), repeats=3)),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'task':40s} {'seconds':>9s} {'target':>8s}  met")
    for name, target, seconds in rows:
        print(f"{name:40s} {seconds:9.4f} {target:8.3f}  {'yes' if seconds <= target else 'NO'}")


if __name__ == "__main__":
    main()
