"""Sweeps: one run per seed and per point of a small grid of settings, in parallel processes, one table.

    convlens train --seeds 0,1,2 --grid lr=0.05,0.1 --grid batch-size=64,128   # 12 runs

Each point trains into BASE-lr0.05-batch_size64-s0 and so on; folders that exist are refused
before anything trains.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import UserError

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
MAX_RUNS = 256


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the settings that differ from the base config, its config and its folder."""

    settings: dict[str, object]
    config: RunConfig
    out: Path


def parse_grid(items: list[str]) -> dict[tuple[str, str], list]:
    """Return {(section, field): values} from ['lr=0.05,0.1', 'batch-size=64,128']."""
    fields = {f.name: (section, f.type) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    grid: dict[tuple[str, str], list] = {}
    for item in items:
        m = re.fullmatch(r"([a-z_-]+)=([^=]+)", item.strip())
        if not m:
            raise UserError(f"--grid '{item}' must be SETTING=V1,V2,..., e.g. lr=0.05,0.1")
        name = m[1].replace("-", "_")
        if name not in fields or name == "seed":
            known = ", ".join(sorted(n.replace("_", "-") for n in fields if n != "seed"))
            raise UserError(f"--grid: unknown setting '{m[1]}' (seeds go in --seeds); settings are: {known}")
        section, kind = fields[name]
        grid[(section, name)] = [_value(v.strip(), str(kind), m[1]) for v in m[2].split(",")]
    return grid


def _value(text: str, kind: str, name: str):
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError):
        raise UserError(f"--grid {name}: '{text}' is not a valid {kind}") from None
    return text


def points(base_config: RunConfig, base: Path, seeds: list[int] | None, grid: dict) -> list[Point]:
    """Return every combination of grid values and seeds, each checked and given its folder."""
    keys = list(grid)
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
        raise UserError(f"{', '.join(taken)} already exist; choose another --out")
    return result


def default_jobs(config: RunConfig, runs: int) -> int:
    """Return how many runs train at once: as many as keep two cores each (oneDNN convolutions scale
    to two threads nearly linearly), one at a time on CUDA."""
    if config.train.device == "cuda":
        return 1
    return max(1, min(runs, (os.cpu_count() or 1) // 2))


def run_points(sweep: list[Point], jobs: int, log=print) -> list[tuple[Point, dict]]:
    """Train every point, `jobs` at a time in separate processes; return (point, test metrics) in order."""
    from .workflows import train_run

    if not 1 <= jobs <= 64:
        raise UserError(f"--jobs {jobs} must be between 1 and 64")
    jobs = min(jobs, len(sweep))
    log(f"training {len(sweep)} runs, {jobs} at a time" + (f" in {jobs} processes" if jobs > 1 else ""))
    if jobs == 1:
        return [(p, train_run(p.config, p.out)) for p in sweep]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_train_point, p.config.to_dict(), str(p.out), threads) for p in sweep]
        return [(p, f.result()) for p, f in zip(sweep, futures)]


def _train_point(config_dict: dict, out: str, threads: int) -> dict:
    """Worker: one run in its own process with its share of the cores."""
    import torch

    from .workflows import train_run

    torch.set_num_threads(threads)
    return train_run(RunConfig.from_dict(config_dict), out, progress=False)
