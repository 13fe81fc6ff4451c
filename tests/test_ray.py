"""Sweeps on a local Ray instance: the same runs as the local engine, and a killed worker's run resumed bit for bit."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from convlens import runs
from convlens.jobs.sweep import sweep
from convlens.ray_engine import STORE, THREADS, unpack

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance, and this process training with the threads a Ray task gets.

    A run's last bits depend on its thread count (oneDNN's reductions, the fused optimizer's chunks), and
    the local engine trains a lone run in this process with whatever count it has: torch's default for
    the machine, or what an earlier test left. CI failed on exactly that mismatch.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    torch.set_num_threads(threads)


def same_run(a, b) -> None:
    """Two run folders hold the same files, bit-identical weights and the same test metrics."""
    names = lambda run: sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())  # noqa: E731
    assert names(a) == names(b)
    wa, wb = load_file(a / runs.WEIGHTS), load_file(b / runs.WEIGHTS)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((run / runs.METRICS).read_text()) for run in (a, b))
    assert ma["test_accuracy"] == mb["test_accuracy"] and ma["test_loss"] == mb["test_loss"]


@pytest.mark.slow
def test_a_ray_sweep_gives_the_folders_and_metrics_of_the_local_engine(local_ray, tiny_config, tmp_path):
    config = tiny_config.replace(train={"epochs": 1})
    grid = {"lr": [0.05, 0.1]}
    local = sweep(config, tmp_path / "local", [0, 1], grid, log=lambda *a: None)
    on_ray = sweep(config, tmp_path / "ray", [0, 1], grid, engine="ray", log=lambda *a: None)
    assert len(on_ray.data["rows"]) == 4
    for row_local, row_ray in zip(local.data["rows"], on_ray.data["rows"]):
        assert row_local | {"run": ""} == row_ray | {"run": ""}
        same_run(tmp_path / row_local["run"].split("/")[-1], tmp_path / row_ray["run"].split("/")[-1])
    assert [p.name for p in on_ray.files] == ["ray-sweep.json", "ray-sweep.png"]


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_resumes_from_its_last_epoch_bit_for_bit(local_ray, tiny_config, tmp_path):
    config = tiny_config.replace(train={"epochs": 4, "batch_size": 32})
    key = str((tmp_path / "ray-s0").resolve())
    finished: list = []
    worker = threading.Thread(target=lambda: finished.append(
        sweep(config, tmp_path / "ray", [0], engine="ray", log=lambda *a: None)))
    worker.start()
    store = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the first epoch's folder is home, then kill the worker
        try:
            store = store or ray.get_actor(STORE)
            if ray.get(store.holds.remote(key)):
                break
        except ValueError:  # the store actor is not there yet
            pass
        time.sleep(0.05)
    killed = ray.get(store.worker.remote(key))
    unpack(ray.get(store.get.remote(key)), tmp_path / "home")  # what the driver's side held at the kill
    os.kill(killed, signal.SIGKILL)
    while ray.get(store.worker.remote(key)) == killed and time.monotonic() < deadline:
        time.sleep(0.05)  # Ray runs the task again, in another worker
    assert ray.get(store.worker.remote(key)) != killed
    worker.join(timeout=600)
    assert finished, "the sweep did not finish"
    history = runs.read_json(tmp_path / "ray-s0" / runs.HISTORY)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    held = runs.read_json(tmp_path / "home" / runs.HISTORY)
    assert history[: len(held)] == held  # resumed from the stored epochs, not trained again (their seconds too)
    sweep(config, tmp_path / "local", [0], log=lambda *a: None)
    same_run(tmp_path / "local-s0", tmp_path / "ray-s0")


@pytest.mark.slow
def test_a_study_shared_out_on_ray_equals_the_study_in_one_process(local_ray, trained_run, tmp_path):
    from conftest import copy_run, untrained_run

    from convlens.jobs.study import seed_study

    copy_run(trained_run, tmp_path / "runs" / "a")
    untrained_run(tmp_path / "runs" / "b", runs.load_run(trained_run).config.data.dataset)
    here = seed_study(str(tmp_path / "runs" / "*"), images=300, out=tmp_path / "here", log=lambda *a: None).data
    there = seed_study(str(tmp_path / "runs" / "*"), images=300, out=tmp_path / "there", engine="ray",
                       log=lambda *a: None).data
    assert here.keys() == there.keys() and here["cka"]["layers"] == there["cka"]["layers"]
    torch.testing.assert_close(torch.tensor(there["cka"]["mean"]), torch.tensor(here["cka"]["mean"]), atol=1e-6, rtol=0)
    for layer, s in here["layers"].items():
        assert there["layers"][layer]["partners_per_map"] == s["partners_per_map"]
        assert abs(there["layers"][layer]["matched_correlation"]["mean"] - s["matched_correlation"]["mean"]) < 1e-6
