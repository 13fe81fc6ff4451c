"""One writer per run folder, tested with real second processes: a second writer is refused, a killed one's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from convlens.storage import LOCK

# A writer that holds a folder's lock until it is killed: another process, as a second `convlens` would be.
HOLDER = """
import sys, time
from convlens.storage import folder_lock
with folder_lock(sys.argv[1], "a test writer", create=True):
    print("locked", flush=True)
    time.sleep(600)
"""


def convlens(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def wait_for_lock(out, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / LOCK).is_file() and (text := (out / LOCK).read_text()).startswith("PID"):
            return text
        time.sleep(0.05)
    raise AssertionError(f"no lock appeared; the writer ended with {process.poll()}")


@pytest.fixture
def held(trained_run, tmp_path):
    """Yield a copy of a trained run whose lock another process holds."""
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("maps", "oip", "top"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    wait_for_lock(run, holder)
    yield run, holder
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("command", ["train --resume RUN", "eval RUN", "report RUN", "maps RUN", "oip RUN --steps 2"])
def test_every_writer_is_refused_while_another_process_writes(held, command):
    run, holder = held
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    done = convlens(*[run if a == "RUN" else a for a in command.split()])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"is being written by PID {holder.pid} (a test writer)" in done.stderr.strip().splitlines()[-1]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing written


def test_reading_while_another_process_writes_is_allowed(held, tmp_path):
    run, _ = held
    done = convlens("maps", run, "--out", tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr


def test_a_lock_left_by_a_killed_writer_is_taken_over(small_mnist, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    wait_for_lock(out, holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    assert (out / LOCK).read_text().startswith(f"PID {holder.pid}")  # the dead writer's note is still there
    done = convlens("train", "--dataset", small_mnist, "--val-size", "256", "--epochs", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").is_file() and not (out / LOCK).exists()


def test_two_trainings_into_one_folder_cannot_mix(small_mnist, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "convlens", "train", "--dataset", small_mnist, "--val-size", "256",
                              "--epochs", "50", "--batch-size", "32", "--lr", "0.1", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(out, first)
        second = convlens("train", "--dataset", small_mnist, "--epochs", "1", "--lr", "0.05", "--out", out)
        assert first.poll() is None, "the first training ended before the second started; the test proves nothing"
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and f"is being written by PID {first.pid} (convlens train)" in second.stderr
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.1  # the first writer's config


def test_a_folder_holding_only_its_config_counts_as_a_run(small_mnist, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    done = convlens("train", "--dataset", small_mnist, "--epochs", "1", "--out", out)
    assert done.returncode == 2 and "already holds a run" in done.stderr
    assert (out / "config.json").read_text() == "{}"
