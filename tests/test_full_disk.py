"""A full disk, made real: a file-size limit (`ulimit -f`) on the writing process, and a 1-MB-scale tmpfs.

The write fails in the middle of training; the user gets one line and exit 2, the folder keeps
nothing half-written, and `--resume` repairs the run into the one an uninterrupted training makes.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import torch

from convlens import runs
from convlens.storage import load_tensors


def train_command(dataset: str, out, *extra) -> list[str]:
    return [sys.executable, "-m", "convlens", "train", "--dataset", dataset, "--val-size", "256", "--epochs", "1",
            "--batch-size", "64", "--lr", "0.1", "--precision", "fp32", "--out", str(out), *extra]


def resume_command(out) -> list[str]:
    return [sys.executable, "-m", "convlens", "train", "--resume", str(out)]


def run(command, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():  # in the child only: writes past this many bytes fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if file_size_limit else None)


def assert_one_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # the lines above it are the progress of the epoch
    assert last.startswith("convlens train: error: "), done.stderr
    for word in words:
        assert word in last, done.stderr


@pytest.fixture(scope="module")
def reference(small_mnist, tmp_path_factory):
    """An uninterrupted one-epoch run of the same settings: what a repaired run must equal."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run(train_command(small_mnist, out))
    assert done.returncode == 0, done.stderr
    return out


def test_a_file_size_limit_is_one_line_and_resume_finishes_the_run(small_mnist, reference, tmp_path):
    out = tmp_path / "run"
    checkpoint = (reference / runs.CHECKPOINT).stat().st_size
    done = run(train_command(small_mnist, out), file_size_limit=checkpoint // 2)  # config fits, checkpoint not
    assert_one_line(done, "cannot write", runs.CHECKPOINT, "File too large", "--resume")
    assert sorted(p.name for p in out.iterdir()) == [runs.CONFIG]  # no temporary, no half file, no lock

    done = run(resume_command(out))
    assert done.returncode == 0, done.stderr
    assert_same_run(out, reference)


@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs of a given size at tmp_path/disk; yield a function that mounts or resizes it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = []

    def mount(size: int):
        options = f"size={size}" + (",remount" if mounted else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
        mounted.append(size)
        return disk

    yield mount
    if mounted:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_tmpfs_after_the_checkpoint_is_repaired_by_resume(small_mnist, reference, small_tmpfs):
    checkpoint = (reference / runs.CHECKPOINT).stat().st_size
    weights = (reference / runs.WEIGHTS).stat().st_size
    assert weights > 64 * 1024  # the margin below is far smaller than the weights file
    disk = small_tmpfs(checkpoint + 64 * 1024)  # room for config and checkpoint, not for the weights after them
    out = disk / "run"
    done = run(train_command(small_mnist, out))
    assert_one_line(done, "cannot write", runs.WEIGHTS, "No space left on device", "--resume")
    assert sorted(p.name for p in out.iterdir()) == [runs.CHECKPOINT, runs.CONFIG]
    # Before the fix a resume here exited 0 without writing weights or history; eval then failed.
    small_tmpfs(64 * 1024 * 1024)
    done = run(resume_command(out))
    assert done.returncode == 0, done.stderr
    assert_same_run(out, reference)
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(out)], capture_output=True, text=True)
    assert done.returncode == 0 and "unfinished" not in done.stdout, done.stderr


def assert_same_run(out, reference) -> None:
    """The repaired run holds the same weights, history and metrics as the uninterrupted one."""
    got, want = load_tensors(out / runs.WEIGHTS)[0], load_tensors(reference / runs.WEIGHTS)[0]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    strip = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert strip(runs.read_json(out / runs.HISTORY)) == strip(runs.read_json(reference / runs.HISTORY))
    assert runs.read_json(out / runs.METRICS)["test_accuracy"] == runs.read_json(reference / runs.METRICS)["test_accuracy"]
    assert not [p for p in out.rglob(".*.tmp")]
