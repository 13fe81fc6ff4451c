"""Sweeps: one run per seed and per point of a small grid of settings, in parallel processes, one table.

    convlens train --seeds 0,1,2 --grid lr=0.05,0.1 --grid batch-size=64,128   # 12 runs

Each point trains into BASE-lr0.05-batch_size64-s0 and so on; folders that exist are refused
before anything trains. The sweep writes BASE-sweep.json (one row per run) and BASE-sweep.png.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..draw import figures
from ..errors import UserError
from ..progress import track
from ..runs import write_json
from . import Result
from .train import train_run

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
MAX_RUNS = 256


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the settings that differ from the base config, its config and its folder."""

    settings: dict[str, object]
    config: RunConfig
    out: Path


def settable_fields() -> dict[str, tuple[str, str]]:
    """Return {field: (section, type name)} of every config field a sweep may vary (all but the seed)."""
    return {f.name: (section, str(f.type)) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
            if f.name != "seed" and not str(f.type).startswith("tuple")}


def points(base_config: RunConfig, base: Path, seeds: list[int] | None, grid: dict[str, list]) -> list[Point]:
    """Return every combination of grid values ({field: values}) and seeds, each checked and given its folder."""
    fields = settable_fields()
    if unknown := [name for name in grid if name not in fields]:
        raise UserError(f"unknown setting {', '.join(unknown)} (seeds are given apart); settings are: "
                        f"{', '.join(sorted(fields))}")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise UserError(f"the seeds must be distinct and at least one (got {seeds})")
    keys = [(fields[name][0], name) for name in grid]
    combos = list(itertools.product(*grid.values())) if grid else [()]
    seed_list = seeds if seeds is not None else [None]
    if len(combos) * len(seed_list) > MAX_RUNS:
        raise UserError(f"the sweep has {len(combos) * len(seed_list)} runs; at most {MAX_RUNS}")
    result = []
    for values, seed in itertools.product(combos, seed_list):
        sections: dict[str, dict] = {}
        settings = {}
        for (section, name), value in zip(keys, values):
            sections.setdefault(section, {})[name] = value
            settings[name] = value
        if seed is not None:
            sections.setdefault("train", {})["seed"] = seed
            settings["seed"] = seed
        suffix = "".join(f"-{name}{value}" for name, value in settings.items() if name != "seed")
        suffix += f"-s{seed}" if seed is not None else ""
        result.append(Point(settings, base_config.replace(**sections), Path(f"{base}{suffix}")))
    if taken := [str(p.out) for p in result if p.out.exists()]:
        raise UserError(f"{', '.join(taken)} already exist; choose another base folder")
    return result


def default_jobs(config: RunConfig, runs: int) -> int:
    """Return how many runs train at once: as many as keep two cores each (oneDNN convolutions scale
    to two threads nearly linearly), one at a time on CUDA."""
    if config.train.device == "cuda":
        return 1
    return max(1, min(runs, (os.cpu_count() or 1) // 2))


ENGINES = ("local", "ray")


def run_points(sweep: list[Point], jobs: int, log=print) -> list[tuple[Point, dict]]:
    """Train every point, `jobs` at a time in separate processes; return (point, test metrics) in order."""
    if not 1 <= jobs <= 64:
        raise UserError(f"{jobs} runs at once: it must be between 1 and 64")
    jobs = min(jobs, len(sweep))
    log(f"training {len(sweep)} runs, {jobs} at a time" + (f" in {jobs} processes" if jobs > 1 else ""))
    if jobs == 1:  # each run draws its own bar, so the overall count is a line per run
        done = []
        for k, p in enumerate(sweep):
            log(f"run {k + 1} of {len(sweep)}: {p.out}")
            done.append((p, train_run(p.config, p.out)))
        return done
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_point, p.config.to_dict(), str(p.out), threads): k for k, p in enumerate(sweep)}
        results = {}
        for future in track(as_completed(futures), f"{len(sweep)} runs", total=len(sweep)):
            k = futures[future]
            results[k] = future.result()
            log(f"finished {sweep[k].out}: test accuracy {results[k]['test_accuracy']:.4f}")
        return [(p, results[k]) for k, p in enumerate(sweep)]


def run_points_on_ray(sweep: list[Point], address: str | None, log=print) -> list[tuple[Point, dict]]:
    """Train every point as a Ray task (two cores each, a GPU on CUDA); return (point, test metrics) in order."""
    from ..ray_engine import train_on_ray

    gpus = 1 if sweep[0].config.train.device == "cuda" else 0
    log(f"training {len(sweep)} runs on Ray" + (f" at {address}" if address else " (a local instance)"))
    landing = train_on_ray([p.config.to_dict() for p in sweep], [p.out for p in sweep], gpus, address)
    results = {}
    for k, metrics in track(landing, f"{len(sweep)} runs", total=len(sweep)):
        results[k] = metrics
        log(f"finished {sweep[k].out}: test accuracy {metrics['test_accuracy']:.4f}")
    return [(p, results[k]) for k, p in enumerate(sweep)]


def _train_point(config_dict: dict, out: str, threads: int) -> dict:
    """Worker: one run in its own process with its share of the cores."""
    import torch

    torch.set_num_threads(threads)
    return train_run(RunConfig.from_dict(config_dict), out, progress=False)


def sweep(config: RunConfig, base: str | Path, seeds: list[int] | None = None, grid: dict[str, list] | None = None,
          jobs: int | None = None, engine: str = "local", address: str | None = None, log=print) -> Result:
    """Train one run per combination of grid values and seeds; write BASE-sweep.json and BASE-sweep.png.

    engine local trains in a pool of processes on this machine; ray trains each run as a Ray task, on a
    local Ray instance or the cluster at `address`. Result.data["rows"] holds each run's settings,
    folder and test metrics, as the JSON file does.
    """
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}'; engines are {', '.join(ENGINES)}")
    grid = grid or {}
    planned = points(config, Path(base), seeds, grid)
    if engine == "ray":
        results = run_points_on_ray(planned, address, log=log)
    else:
        results = run_points(planned, jobs or default_jobs(config, len(planned)), log=log)
    names = list(planned[0].settings)
    rows = [point.settings | {"run": str(point.out), "test_accuracy": metrics["test_accuracy"],
                              "test_loss": metrics["test_loss"]} for point, metrics in results]
    table, chart = Path(f"{base}-sweep.json"), Path(f"{base}-sweep.png")
    write_json(table, rows)
    return Result([table, figures.save(figures.sweep(rows, names), chart)], {"settings": names, "rows": rows})
