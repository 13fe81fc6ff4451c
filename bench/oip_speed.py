"""OIP speed and quality on the CPU (issue 9): every conv map of `simple`, per layer, against the targets.

usage: python bench/oip_speed.py [RUN] [--json PATH]   (default: trains `simple` for 3 epochs first)

Per layer: the batched search's seconds, the share of maps whose OIP beats the best of the 10,000
test images (target >= 95%), how many were silent at the start, and the speed-up of batching over
searching the same maps one at a time (measured on 8 maps, same steps, same run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from convlens import RunConfig, load_dataset, load_run, train
from convlens.oip import Ascent, best_test_activation, layer_oips
from convlens.speed import images_to_device

SAMPLE = 8  # maps searched one by one for the unbatched baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run of `simple` on MNIST (default: train one for 3 epochs)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    run_dir = args.run or tempfile.mkdtemp() + "/run"
    if not args.run:
        train(RunConfig().replace(train={"epochs": 3}), out=run_dir)
    model = load_run(run_dir).model
    x = images_to_device(load_dataset("mnist").test_images, torch.device("cpu"))
    ascent = Ascent()
    layer_oips(model, "conv1", maps=[0], ascent=Ascent(steps=2))  # warm-up: oneDNN picks its kernels
    rows = []
    for layer in ("conv1", "conv2", "conv3"):
        best, _ = best_test_activation(model, x, layer)
        oips = layer_oips(model, layer, ascent=ascent)
        ratio = oips.activation[:, 0] / best
        start = time.perf_counter()
        for m in range(SAMPLE):
            layer_oips(model, layer, maps=[m], ascent=ascent)
        one_by_one = (time.perf_counter() - start) / SAMPLE * len(oips.index)
        rows.append({"layer": layer, "maps": len(oips.index), "seconds": oips.seconds,
                     "share_ratio_ge_1": (ratio >= 1).float().mean().item(), "median_ratio": ratio.median().item(),
                     "silent_at_start": int((~oips.fired_from_start).sum()), "never_fired": int((~oips.fired).sum()),
                     "one_by_one_seconds": one_by_one, "batching_speedup": one_by_one / oips.seconds})
    total = sum(r["seconds"] for r in rows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {ascent.steps} steps per OIP")
    print(f"{'layer':6s} {'maps':>5s} {'seconds':>8s} {'ratio>=1':>9s} {'median x':>9s} {'silent@0':>9s} "
          f"{'dead':>5s} {'1-by-1 s':>9s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['layer']:6s} {r['maps']:5d} {r['seconds']:8.2f} {r['share_ratio_ge_1']:9.1%} {r['median_ratio']:9.2f} "
              f"{r['silent_at_start']:9d} {r['never_fired']:5d} {r['one_by_one_seconds']:9.1f} {r['batching_speedup']:8.1f}x")
    print(f"all {sum(r['maps'] for r in rows)} maps: {total:.2f} s (target <= 10 s: {'met' if total <= 10 else 'NOT met'}); "
          f"quality target >= 95% per layer: {'met' if all(r['share_ratio_ge_1'] >= 0.95 for r in rows) else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
