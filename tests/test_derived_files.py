"""Derived files (metrics, inspection folders) are stamped with the weights they came from and written whole.

A retrained run does not show old results as its own; another data set's evaluation lands beside
the run's own; a writer killed mid-way leaves the old folder intact, and the next writer cleans up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import copy_run

from convlens import runs
from convlens.jobs.maps import maps
from convlens.jobs.oip import layer_oip
from convlens.jobs.report import report
from convlens.jobs.train import evaluate_run
from convlens.oip import Ascent


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def retrain(run) -> None:
    """Replace the run's weights with others of the same model, as a resumed or repeated training does."""
    r = runs.Run(run)
    runs.save_weights(run / runs.WEIGHTS, r.untrained_model(seed=7), r.config)


def test_results_of_earlier_weights_are_not_shown_as_the_runs(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    evaluate_run(run)
    layer_oip(run, layers=["conv1"], maps=[0, 1], ascent=Ascent(steps=4), log=lambda *a: None)
    assert runs.Run(run).metrics is not None and runs.Run(run).saved_oips("conv1") is not None
    retrain(run)
    fresh = runs.Run(run)
    assert fresh.metrics is None  # the accuracy of the old weights is not these weights' accuracy
    assert fresh.saved_oips("conv1") is None and not fresh.has_oips("conv1")
    from convlens.web.live import LiveRun

    assert not any(layer["has_oips"] for layer in LiveRun(run).info()["layers"])  # the live page agrees
    page = report(run).read_text()
    assert "were made from earlier weights of this run" in page
    metrics = runs.Run(run).metrics  # the report evaluated the new weights
    assert metrics["weights_sha256"] == fresh.weights_sha256
    assert metrics["test_accuracy"] < 0.5  # untrained weights, not the trained run's ~93%


def test_a_new_write_after_retraining_drops_the_stale_results_it_would_have_kept(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    layer_oip(run, layers=["conv1"], maps=[0], ascent=Ascent(steps=4), log=lambda *a: None)
    retrain(run)
    layer_oip(run, layers=["conv2"], maps=[0], ascent=Ascent(steps=4), log=lambda *a: None)
    oip = run / "oip"
    assert not (oip / runs.oip_tensors("conv1")).exists()  # conv1's OIPs were of the old weights
    assert {e["layer"] for e in runs.read_json(oip / "oip.json")["maps"]} == {"conv2"}
    layer_oip(run, layers=["conv3"], maps=[0], ascent=Ascent(steps=4), log=lambda *a: None)
    assert {e["layer"] for e in runs.read_json(oip / "oip.json")["maps"]} == {"conv2", "conv3"}  # same weights: kept


def test_another_datasets_evaluation_goes_beside_the_runs_own(trained_run, tmp_path, mnist):
    run = copy_run(trained_run, tmp_path / "run")
    evaluate_run(run)
    own = (run / runs.METRICS).read_bytes()
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(run), "--dataset", "fashion-mnist"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (run / runs.METRICS).read_bytes() == own
    other = runs.read_json(run / "metrics-fashion-mnist.json")
    assert other["dataset"] == "fashion-mnist" and (run / runs.PLOTS / "confusion-fashion-mnist.png").is_file()
    assert "metrics-fashion-mnist.json, plots/confusion-fashion-mnist.png" in done.stdout


def test_an_oip_killed_mid_way_leaves_the_old_folder_whole_and_the_next_writer_cleans_up(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    layer_oip(run, ascent=Ascent(steps=4), log=lambda *a: None)
    before = snapshot(run / "oip")
    # A long search of every layer, killed once it has written conv1's files into its new folder.
    writer = subprocess.Popen([sys.executable, "-m", "convlens", "oip", str(run), "--steps", "3000", "--seed", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(run.glob(f".oip.*.new/{runs.oip_tensors('conv1')}")):
        assert writer.poll() is None and time.monotonic() < deadline, "the search ended before it could be killed"
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert snapshot(run / "oip") == before  # not conv1 new and conv3 old: all old
    assert list(run.glob(".oip.*.new"))
    maps(run, images=[0], layers=["conv1"])  # the next writer into the run
    assert not list(run.glob(".*.new")) and not list(run.rglob(".*.tmp"))
    assert snapshot(run / "oip") == before


def test_a_folder_replaced_halfway_is_put_back_by_the_next_writer(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    layer_oip(run, layers=["conv1"], maps=[0], ascent=Ascent(steps=4), log=lambda *a: None)
    before = snapshot(run / "oip")
    (run / "oip").rename(run / ".oip.k1ll3d.old")  # a kill between the two renames of a replacement
    (run / ".oip.k1ll3d.new").mkdir()
    (run / ".history.json.x.tmp").write_bytes(b"")  # and a 0-byte temporary of another write
    evaluate_run(run)
    assert snapshot(run / "oip") == before
    assert not list(run.glob(".oip.*")) and not list(run.rglob(".*.tmp"))
