"""OIP speed and quality on the CPU (issue 9): every conv map of `simple`, per layer, against the targets.

usage: python bench/oip_speed.py [RUN] [--seeds 0,1,2] [--json PATH]
       (default: trains `simple` for 3 epochs first, once per seed; the quality is stated as its range over seeds)

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


def measure(run_dir: str, x: torch.Tensor, ascent: Ascent) -> list[dict]:
    """Return one row per conv layer of a run: seconds, quality against the test set, the batching speed-up."""
    model = load_run(run_dir).model
    layer_oips(model, "conv1", maps=[0], ascent=Ascent(steps=2))  # warm-up: oneDNN picks its kernels
    rows = []
    for layer in ("conv1", "conv2", "conv3"):
        best, _ = best_test_activation(model, x, layer)
        oips = layer_oips(model, layer, ascent=ascent)
        ratio = oips.reached / best
        start = time.perf_counter()
        for m in range(SAMPLE):
            layer_oips(model, layer, maps=[m], ascent=ascent)
        one_by_one = (time.perf_counter() - start) / SAMPLE * len(oips.index)
        rows.append({"layer": layer, "maps": len(oips.index), "seconds": oips.seconds,
                     "beating_test": int((ratio >= 1).sum()),
                     "share_ratio_ge_1": (ratio >= 1).float().mean().item(), "median_ratio": ratio.nanmedian().item(),
                     "silent_at_start": int((~oips.fired_from_start).sum()), "never_fired": int((~oips.fired).sum()),
                     "one_by_one_seconds": one_by_one, "batching_speedup": one_by_one / oips.seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run of `simple` on MNIST (default: train one for 3 epochs per seed)")
    parser.add_argument("--seeds", default="0", help="seeds of the 3-epoch runs trained when no RUN is given (default 0)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    x = images_to_device(load_dataset("mnist").test_images, torch.device("cpu"))
    ascent = Ascent()
    runs = {"given": args.run} if args.run else {}
    for seed in ([] if args.run else [int(s) for s in args.seeds.split(",")]):
        runs[f"seed {seed}"] = tempfile.mkdtemp() + "/run"
        train(RunConfig().replace(train={"epochs": 3, "seed": seed}), out=runs[f"seed {seed}"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {ascent.steps} steps per OIP")
    print(f"{'run':7s} {'layer':6s} {'maps':>5s} {'seconds':>8s} {'ratio>=1':>13s} {'median x':>9s} {'silent@0':>9s} "
          f"{'dead':>5s} {'1-by-1 s':>9s} {'speed-up':>9s}")
    table = {}
    for name, run_dir in runs.items():
        table[name] = rows = measure(run_dir, x, ascent)
        for r in rows:
            share = f"{r['beating_test']}/{r['maps']} {r['share_ratio_ge_1']:.1%}"
            print(f"{name:7s} {r['layer']:6s} {r['maps']:5d} {r['seconds']:8.2f} {share:>13s} {r['median_ratio']:9.2f} "
                  f"{r['silent_at_start']:9d} {r['never_fired']:5d} {r['one_by_one_seconds']:9.1f} "
                  f"{r['batching_speedup']:8.1f}x")
        total = sum(r["seconds"] for r in rows)
        print(f"{name}: all {sum(r['maps'] for r in rows)} maps in {total:.2f} s (target <= 10 s: "
              f"{'met' if total <= 10 else 'NOT met'}); quality >= 95% per layer: "
              f"{'met' if all(r['share_ratio_ge_1'] >= 0.95 for r in rows) else 'NOT met'}")
    for layer in ("conv1", "conv2", "conv3"):
        shares = [r["share_ratio_ge_1"] for rows in table.values() for r in rows if r["layer"] == layer]
        print(f"{layer}: maps beating the best test image, over {len(shares)} run(s): {min(shares):.1%} to {max(shares):.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
