"""Comparing two runs on the CPU (issue 6): target < 10 s for two `simple` runs on 2,000 test images.

usage: python bench/compare_speed.py [RUN_A RUN_B]   (default: trains `simple` for one epoch on seeds 0 and 1)
Prints the time of compare_models (maps, matching, CKA) and of the test-set agreement, separately,
and the per-layer answer to "do two trainings learn the same filters?".
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from convlens import RunConfig, load_dataset, load_run, train
from convlens.compare import compare_models
from convlens.compare.runs_compare import agreement
from convlens.speed import images_to_device


def main() -> None:
    if len(sys.argv) == 3:
        dirs = sys.argv[1:]
    else:
        base = tempfile.mkdtemp()
        dirs = [f"{base}/s{s}" for s in (0, 1)]
        for seed, d in zip((0, 1), dirs):
            train(RunConfig().replace(train={"epochs": 1, "seed": seed}), out=d)
    a, b = (load_run(d).model for d in dirs)
    ds = load_dataset("mnist")
    x = images_to_device(ds.test_images[:2000], torch.device("cpu"))
    compare_models(a, b, x[:64])  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    c = compare_models(a, b, x)
    maps_seconds = time.perf_counter() - start
    start = time.perf_counter()
    share, *_ = agreement(a, b, ds.test_images)
    agree_seconds = time.perf_counter() - start
    total = maps_seconds + agree_seconds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"maps, Hungarian matching and CKA on 2,000 images: {maps_seconds:.2f} s; agreement on 10,000: {agree_seconds:.2f} s")
    print(f"total {total:.2f} s (target < 10 s: {'met' if total < 10 else 'NOT met'}); prediction agreement {share:.2%}")
    for layer, s in c.summary()["layers"].items():
        print(f"  {layer}: mean matched correlation {s['mean_matched_correlation']:.3f}, >= 0.8: {s['share_at_least_0.8']:.0%}, "
              f">= 0.9: {s['share_at_least_0.9']:.0%}, same order: {s['same_order']} ({s['maps_in_place']} maps in place)")
    print("CKA diagonal:", ", ".join(f"{n} {c.cka[i, i]:.3f}" for i, n in enumerate(c.cka_layers)))


if __name__ == "__main__":
    main()
