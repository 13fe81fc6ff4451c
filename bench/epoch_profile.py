"""Where an epoch's time goes (issue 20): one epoch of each preset under torch.profiler, per phase and per op.

usage: python bench/epoch_profile.py [--recipes fast,default] [--out bench/epoch_profile_cpu.md]
Each recipe trains one epoch twice (the first warms oneDNN's kernel choice up) and profiles the second.
Phases are the parts of a step training.py names: data (slicing, augmentation, layout), forward (with the
loss), backward, optimizer; "other" is the rest of the epoch: the Python loop, the progress line,
the schedule and the validation pass. Ops are ranked by their own time. The table is printed and written
as Markdown with the CPU's flags, so figures from different machines stay apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from convlens import RunConfig, train
from convlens.config import RECIPES
from convlens.speed import cpu_description, cpu_has_fast_bf16

PHASES = ("data", "forward", "backward", "optimizer")


def profile_epoch(recipe: str) -> tuple[float, dict[str, float], list[tuple[str, float, int]]]:
    """Return (epoch seconds, seconds per phase, [(op, self seconds, calls)]) of one profiled epoch."""
    sections = {name: dict(fields) for name, fields in RECIPES[recipe].items()}
    sections.setdefault("train", {})["epochs"] = 1
    config = RunConfig().replace(**sections)
    train(config)  # warm-up: oneDNN picks its kernels, the data set is read
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        train(config)
        seconds = time.perf_counter() - started
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in PHASES}
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count) for e in events
                  if e.key not in PHASES and not e.key.startswith(("ProfilerStep", "Optimizer."))),
                 key=lambda row: -row[1])
    return seconds, phases, ops[:12]


def table(recipe: str, seconds: float, phases: dict[str, float], ops) -> str:
    lines = [f"### `{recipe}` ({RunConfig().replace(**{k: dict(v) for k, v in RECIPES[recipe].items()}).model.model}),"
             f" one epoch: {seconds:.2f} s under the profiler", "", "| phase | s | share |", "|---|---|---|"]
    for name in PHASES:
        lines.append(f"| {name} | {phases.get(name, 0):.3f} | {phases.get(name, 0) / seconds:.0%} |")
    other = seconds - sum(phases.values())
    lines += [f"| other (loop, schedule, validation, data loading) | {other:.3f} | {other / seconds:.0%} |", "",
              "| op (own time) | s | calls |", "|---|---|---|"]
    lines += [f"| {name} | {own:.3f} | {calls} |" for name, own, calls in ops]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="fast,default", help="comma-separated recipes (default fast,default)")
    parser.add_argument("--out", default="bench/epoch_profile_cpu.md", help="write the Markdown tables here")
    args = parser.parse_args()
    head = (f"# One epoch, profiled\n\n{cpu_description()}; torch {torch.__version__}; "
            f"bf16 units: {'yes' if cpu_has_fast_bf16() else 'no'}\n")
    parts = [head] + [table(r, *profile_epoch(r)) for r in args.recipes.split(",")]
    text = "\n\n".join(parts) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
