"""Comparing two runs on the CPU (issue 6): target < 10 s for two `simple` runs on 2,000 test images.

usage: python bench/compare_speed.py [RUN_A RUN_B]   (default: trains `simple` for one epoch on seeds 0 and 1)
Prints the time of compare_models (maps, matching, CKA) and of the test-set agreement, separately,
and the per-layer answer to "do two trainings learn the same filters?".

Then CKA alone, side by side with torch-cka 0.21 on the same work (issue 20: >= 5x faster): the CKA of
every compared layer of A with every one of B on the 2,000 images in batches of 256, forward passes
included. torch-cka makes each Gram matrix of B once per layer of A and multiplies n x n matrices per
pair; convlens makes each once per batch and needs n**2 per pair, and reduces each batch's maps to their
Grams before the next batch runs. Both results are checked equal.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import torch

from convlens import RunConfig, load_dataset, load_run, train
from convlens.compare import compare_models
from convlens.compare.runs_compare import agreement
from convlens.compare.similarity import gram, linear_cka
from convlens.compare.study import minibatch_cka
from convlens.inspection.maps import feature_maps
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
        print(f"  {layer}: mean matched correlation {s['mean_matched_correlation']:.3f}, with a partner "
              f"(r >= {s['partner_threshold']}): {s['share_with_partner']:.0%}, same order: {s['same_order']} "
              f"({s['maps_in_place']} maps in place)")
    print("CKA diagonal:", ", ".join(f"{n} {c.cka[i, i]:.3f}" for i, n in enumerate(c.cka_layers)))
    cka_side_by_side(dirs, x, c.cka_layers)


def cka_side_by_side(dirs: list[str], x: torch.Tensor, layers: list[str], repeats: int = 5) -> None:
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    def ours_minibatch():
        a, b = (load_run(d).model for d in dirs)
        return minibatch_cka(a, b, x, layers)

    def ours_full():
        a, b = (load_run(d).model for d in dirs)
        maps_a, maps_b = feature_maps(a, x, layers), feature_maps(b, x, layers)
        return linear_cka([gram(maps_a[n]) for n in layers], [gram(maps_b[n]) for n in layers])

    def reference():
        cka = CKA(*(load_run(d).model for d in dirs), "a", "b", model1_layers=layers, model2_layers=layers)
        with torch.no_grad():
            cka.compare(DataLoader(TensorDataset(x), batch_size=256), DataLoader(TensorDataset(x), batch_size=256))
        return cka.export()["CKA"]

    # Rounds take turns, so a drift in this shared machine's speed falls on all three alike.
    works = {"torch-cka 0.21, minibatch": reference, "convlens, minibatch": ours_minibatch,
             "convlens, full batch": ours_full}
    times, results = {name: [] for name in works}, {}
    for _ in range(repeats):
        for name, work in works.items():
            start = time.perf_counter()
            results[name] = work()
            times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    base = seconds["torch-cka 0.21, minibatch"]
    difference = (results["convlens, minibatch"] - results["torch-cka 0.21, minibatch"].float()).abs().max()
    print(f"CKA {len(layers)}x{len(layers)} on {len(x)} images, batches of 256, median of {repeats} rounds "
          f"(largest difference between the two minibatch results {difference:.1e}):")
    for name, value in seconds.items():
        print(f"  {name:28s} {value:6.2f} s   {base / value:5.1f}x torch-cka")
    ratio = base / seconds["convlens, minibatch"]
    print(f"target >= 5x torch-cka on the same work: {'met' if ratio >= 5 else 'NOT met'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
