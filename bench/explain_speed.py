"""Attribution speed on the CPU (issue 5): IG with 50 steps on one image (target < 200 ms), and every
method for all misclassified test images of a 99%-accurate model (target < 30 s).

usage: python bench/explain_speed.py [RUN]   (default: trains `simple` with the default recipe, 2 epochs)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import torch

from convlens import RunConfig, evaluate, load_dataset, load_run, train
from convlens.explain import METHODS, attribute
from convlens.speed import images_to_device
from convlens.training import predict


def main() -> None:
    run_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/run"
    if len(sys.argv) == 1:
        train(RunConfig(), out=run_dir)
    model = load_run(run_dir).model
    ds = load_dataset("mnist")
    accuracy = evaluate(model, ds.test_images, ds.test_labels)["accuracy"]
    x = images_to_device(ds.test_images, torch.device("cpu"))
    one, t = x[:1], predict(model, ds.test_images[:1]).argmax(1)
    attribute(model, one, t, "ig")  # warm-up
    times = []
    for _ in range(7):
        start = time.perf_counter()
        attribute(model, one, t, "ig", steps=50)
        times.append(time.perf_counter() - start)
    ig_ms = statistics.median(times) * 1000
    predicted = predict(model, ds.test_images).argmax(1)
    wrong = torch.nonzero(predicted != ds.test_labels).flatten()
    per_method = {}
    for method in METHODS:
        start = time.perf_counter()
        attribute(model, x[wrong], predicted[wrong], method)
        per_method[method] = time.perf_counter() - start
    total = sum(per_method.values())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model test accuracy {accuracy:.4f}")
    print(f"integrated gradients, 50 steps, one image: {ig_ms:.1f} ms (median of 7; target < 200 ms: "
          f"{'met' if ig_ms < 200 else 'NOT met'})")
    print(f"all {len(METHODS)} methods on the {len(wrong)} misclassified test images: {total:.2f} s "
          f"(target < 30 s: {'met' if total < 30 else 'NOT met'})")
    for method, seconds in per_method.items():
        print(f"  {method:16s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
