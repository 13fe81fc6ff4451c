"""Sweeps over seeds and a grid of settings: parsing, the points and their folders, and a real parallel sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convlens.config import RunConfig
from convlens.errors import UserError
from convlens.cli.train import parse_grid
from convlens.jobs.sweep import MAX_RUNS, points


def test_grid_values_take_their_fields_types():
    grid = parse_grid(["lr=0.05,0.1", "batch-size=64,128", "augment=none,shift", "nesterov=true,false", "model=simple,fast"])
    assert grid == {"lr": [0.05, 0.1], "batch_size": [64, 128], "augment": ["none", "shift"],
                    "nesterov": [True, False], "model": ["simple", "fast"]}


@pytest.mark.parametrize("item, message", [
    ("lr", "must be SETTING=V1,V2"),
    ("speed=1,2", "unknown setting 'speed'"),
    ("seed=1,2", "seeds go in --seeds"),
    ("batch-size=64,big", "'big' is not a valid int"),
])
def test_bad_grids_are_one_clear_error(item, message):
    with pytest.raises(UserError, match=message):
        parse_grid([item])


def test_points_combine_grid_and_seeds_with_one_folder_each(tmp_path):
    sweep = points(RunConfig(), tmp_path / "base", [0, 1], parse_grid(["lr=0.05,0.1", "epochs=1,2"]))
    assert len(sweep) == 8
    assert sweep[0].out.name == "base-lr0.05-epochs1-s0" and sweep[-1].out.name == "base-lr0.1-epochs2-s1"
    assert [(p.config.train.lr, p.config.train.epochs, p.config.train.seed) for p in sweep[:3]] == [
        (0.05, 1, 0), (0.05, 1, 1), (0.05, 2, 0)]
    assert len({p.out for p in sweep}) == 8


def test_sweeps_check_values_sizes_and_folders_before_training(tmp_path):
    with pytest.raises(UserError, match="lr must be positive"):
        points(RunConfig(), tmp_path / "b", None, parse_grid(["lr=0.1,-1"]))
    with pytest.raises(UserError, match=f"at most {MAX_RUNS}"):
        points(RunConfig(), tmp_path / "b", list(range(100)), parse_grid(["lr=1,2,3"]))
    (tmp_path / "b-lr2.0").mkdir()
    with pytest.raises(UserError, match="b-lr2.0 already exist"):
        points(RunConfig(), tmp_path / "b", None, parse_grid(["lr=1,2"]))


def test_a_grid_sweep_trains_in_parallel_processes_and_prints_one_table(small_mnist, tmp_path):
    base = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "convlens", "train", "--dataset", small_mnist, "--val-size", "256",
                           "--epochs", "1", "--grid", "lr=0.02,0.1", "--jobs", "2", "--out", str(base)],
                          capture_output=True, text=True, timeout=600, env=os.environ | {"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "training 2 runs, 2 at a time in 2 processes" in done.stdout
    folders = [tmp_path / "sweep-lr0.02", tmp_path / "sweep-lr0.1"]
    assert [json.loads((f / "config.json").read_text())["train"]["lr"] for f in folders] == [0.02, 0.1]
    lines = done.stdout.splitlines()
    finished = sorted(line for line in lines if line.startswith("finished "))  # one as each run ends, any order
    table = [line for line in lines if "sweep-lr" in line and not line.startswith("finished ")]
    assert len(finished) == 2 and len(table) == 2
    for folder, line, ended in zip(folders, table, finished):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert str(folder) in line and f"{metrics['test_accuracy']:.4f}" in line
        assert ended == f"finished {folder}: test accuracy {metrics['test_accuracy']:.4f}"
