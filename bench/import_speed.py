"""Imported models against native ones (issue 17): import time, and every command on each, side by side.

usage: python bench/import_speed.py [--repeats 5]

The imported run is the articles' net as Keras saved it (tests/fixtures/keras/articles.keras); the
native run is convlens's `simple`, the same architecture, trained one epoch here. Each command runs
as its job (files written) on both, the two runs alternating so drift hits both alike, median of the
repeats; the ratio is imported / native. Most of each command's time is matplotlib, so the
forward pass alone (every map of every layer for 4 images) is timed too.
Targets: the import in <= 2 s; OIPs of every map as fast as native; no command more than 10% slower.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from convlens import RunConfig, train
from convlens.data import load_dataset
from convlens.importers import import_file
from convlens.inspection.maps import feature_maps
from convlens.jobs.explain import explain
from convlens.jobs.import_model import import_model
from convlens.jobs.kernels import kernels
from convlens.jobs.maps import maps
from convlens.jobs.oip import layer_oip
from convlens.jobs.patterns import patterns
from convlens.jobs.report import report
from convlens.jobs.top import top
from convlens.jobs.train import evaluate_run
from convlens.runs import load_run

KERAS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras" / "articles.keras"
QUIET = {"log": lambda *a: None}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(job, runs: dict, repeats: int) -> dict[str, float]:
    """Return the median seconds of job(run, name) per run, the runs taking turns."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(lambda: job(run, name)))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    load_dataset("mnist")  # read once, as a command's process would have it
    file_seconds = statistics.median(timed(lambda: import_file(KERAS)) for _ in range(args.repeats))
    run_seconds = statistics.median(timed(lambda: import_model(KERAS, "mnist", work / f"imported-{i}"))
                                    for i in range(args.repeats))
    imported = load_run(work / "imported-0")
    native_dir = work / "native"
    train(RunConfig().replace(train={"epochs": 1}), out=native_dir)
    native = load_run(native_dir)
    for run in (imported, native):  # warm-up: the first calls pick oneDNN kernels and load the test set
        maps(run, [0], out=work / "warm")
    names = {"native": native.layers.convs, "imported": imported.layers.convs}
    jobs = {
        "forward, all maps": lambda r, k: feature_maps(r.model, r.test_inputs[:4]),
        "eval": lambda r, k: evaluate_run(r.path),
        "maps 4:3,9:1": lambda r, k: maps(r, r.first_of_classes([(4, 3), (9, 1)]), out=work / f"maps-{k}"),
        "kernels": lambda r, k: kernels(r, out=work / f"kernels-{k}"),
        "patterns 4,9": lambda r, k: patterns(r, pair=(4, 9), out=work / f"patterns-{k}"),
        "top conv1": lambda r, k: top(r, names[k][0], out=work / f"top-{k}"),
        "explain 4": lambda r, k: explain(r, 4, steps=16, out=work / f"explain-{k}", **QUIET),
        "oip every map": lambda r, k: layer_oip(r, out=work / f"oip-{k}", **QUIET),
        "report": lambda r, k: report(r.path, out=work / f"report-{k}.html", **QUIET),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"import articles.keras: reading and converting {file_seconds:.3f} s; the whole run folder with its "
          f"test-set evaluation and plots {run_seconds:.2f} s (target <= 2 s: {'met' if run_seconds <= 2 else 'NOT met'})")
    print(f"{'command':16s} {'native s':>9s} {'imported s':>11s} {'ratio':>7s}  within 10%")
    for name, job in jobs.items():
        seconds = side_by_side(job, {"native": native, "imported": imported},
                               args.repeats * (20 if name.startswith("forward") else 1))
        ratio = seconds["imported"] / seconds["native"]
        print(f"{name:16s} {seconds['native']:9.3f} {seconds['imported']:11.3f} {ratio:7.2f}  "
              f"{'yes' if ratio <= 1.10 else 'NO'}")


if __name__ == "__main__":
    main()
