"""Faults during training: kill -9 and resume, Ctrl-C, a full disk, an unwritable folder, corrupt files."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import copy_run
from safetensors.torch import load_file

from convlens import runs, storage
from convlens.errors import UserError
from convlens.training import train

EPOCHS = 6


def train_command(dataset: str, out, resume: bool = False) -> list[str]:
    if resume:
        return [sys.executable, "-m", "convlens", "train", "--resume", str(out)]
    return [sys.executable, "-m", "convlens", "train", "--dataset", dataset, "--val-size", "256", "--epochs",
            str(EPOCHS), "--batch-size", "64", "--lr", "0.05", "--precision", "fp32", "--out", str(out)]


def finished_epochs(out) -> int:
    path = out / runs.CHECKPOINT
    return int(runs.load_tensors(path)[1]["epoch"]) if path.exists() else 0


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_equals_the_uninterrupted_run(small_mnist, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(train_command(small_mnist, reference), check=True, capture_output=True, timeout=600)
    epoch_seconds = max(h["seconds"] for h in runs.read_json(reference / runs.HISTORY))

    out, rng, kills = tmp_path / "killed", random.Random(2026), []
    command = train_command(small_mnist, out)
    for _ in range(5):  # five kills, each inside a later epoch than the one before, at a random moment of it
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until this process has itself finished an epoch (the first: until it starts training), then
        # kill it within the next one. The moment is a share of an epoch as this process times it: under a
        # busy machine epochs run slower than the reference's, and a kill timed from the reference's
        # epoch could land after the next epoch ended or before the process had resumed at all.
        done_before, deadline = kills[-1] if kills else -1, time.monotonic() + 120
        while not ((out / runs.CONFIG).exists() and finished_epochs(out) > done_before) and time.monotonic() < deadline:
            time.sleep(0.02)
        history = runs.read_json(out / runs.HISTORY) if (out / runs.HISTORY).exists() else []
        time.sleep(rng.uniform(0.05, 0.5) * (history[-1]["seconds"] if history else epoch_seconds))
        assert process.poll() is None, "the run ended before its kill point"
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(finished_epochs(out))
        if kills[-1]:  # nothing lost: the finished epochs are loadable and the history holds them
            assert len(runs.read_json(out / runs.HISTORY)) >= kills[-1]
        command = train_command(small_mnist, out, resume=True)
    print(f"kill -9 with these epochs finished: {kills}")
    assert kills == sorted(set(kills)) and len(kills) == 5  # five kills, each in a later epoch than the last
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    a, b = load_file(reference / runs.WEIGHTS), load_file(out / runs.WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in runs.read_json(out / runs.HISTORY)] == list(range(1, EPOCHS + 1))
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_finishes_the_checkpoint_and_says_how_to_resume(small_mnist, tmp_path):
    out = tmp_path / "run"
    # A child of a background job inherits SIGINT ignored; give it the terminal's default, as a user has.
    process = subprocess.Popen(train_command(small_mnist, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while finished_epochs(out) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert f"convlens train --resume {out}" in output and "Traceback" not in output
    done = finished_epochs(out)
    assert 1 <= done < EPOCHS
    assert len(runs.read_json(out / runs.HISTORY)) == done


def test_an_interrupt_waits_for_the_block_then_arrives():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even under nohup
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with storage.interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("after the signal")
        assert steps == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_ignored_interrupt_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup convlens train ... &
    try:
        with storage.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_full_disk_keeps_the_previous_checkpoint(tiny_config, tmp_path, monkeypatch):
    from safetensors import torch as st

    out, writes = tmp_path / "run", []
    real_save = st.save_file

    def save_until_full(tensors, filename, metadata=None):
        writes.append(filename)
        if len(writes) > 2:  # epoch 1 wrote checkpoint and weights; the disk fills during epoch 2's checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(storage, "save_file", save_until_full)
    with pytest.raises(UserError, match=r"No space left on device.*convlens train --resume"):
        train(tiny_config, out=out)
    assert finished_epochs(out) == 1
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(storage, "save_file", real_save)
    resumed = train(tiny_config, out=out, resume=True)
    reference = train(tiny_config, out=tmp_path / "reference")
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                 reference.model.state_dict().values()))


def test_an_unwritable_run_folder_is_refused_before_training(small_mnist):
    done = subprocess.run([sys.executable, "-m", "convlens", "train", "--dataset", small_mnist, "--val-size", "256",
                           "--epochs", "1", "--out", "/proc/convlens-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "cannot write /proc/convlens-run: No such file or directory" in done.stderr
    assert "choose another run folder" in done.stderr and "Traceback" not in done.stderr


def test_permission_denied_mid_run_is_one_clear_error(tiny_config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_replace = os.replace

    def deny_history(src, dst):
        if str(dst).endswith(runs.HISTORY):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", deny_history)
    with pytest.raises(UserError, match=r"cannot write .*history.json: Permission denied"):
        train(tiny_config, out=out)
    assert finished_epochs(out) == 1  # the checkpoint before the failing write stands


CONFIG_DAMAGE = {  # a config.json edited by hand, and the line that names the problem
    "epochs-text": (lambda c: c["train"].update(epochs="two"), "config value train.epochs must be int, not 'two'"),
    "model-number": (lambda c: c["model"].update(model=5), "config value model.model must be str, not 5"),
    "null-section": (lambda c: c.update(train=None), "config section 'train' must be an object, not NoneType"),
}


@pytest.mark.parametrize("damage", list(CONFIG_DAMAGE))
def test_a_config_of_the_wrong_types_is_one_clear_error(trained_run, tmp_path, damage):
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run")
    config = runs.read_json(run / runs.CONFIG)
    edit, message = CONFIG_DAMAGE[damage]
    edit(config)
    runs.write_json(run / runs.CONFIG, config)
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(run)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_nan_weights_are_named_as_such(trained_run, tmp_path):
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run")
    tensors, meta = runs.load_tensors(run / runs.WEIGHTS)
    tensors["conv2.conv.weight"][0, 0, 0, 0] = float("nan")
    runs.save_tensors(run / runs.WEIGHTS, tensors, meta)
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(run)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "holds NaN or infinite values (first in conv2.conv.weight)" in done.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-config"])
def test_damaged_weights_or_config_are_one_clear_error(trained_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = run / runs.WEIGHTS
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 100)
    else:
        config = runs.read_json(run / runs.CONFIG)
        config["model"]["model"] = "mlp"
        runs.write_json(run / runs.CONFIG, config)
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(run)], capture_output=True, text=True,
                          timeout=300)
    expected = "does not fit the model in config.json" if damage == "wrong-config" else "is corrupt or truncated"
    assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr


def test_no_user_file_is_ever_unpickled():
    import pathlib
    import re

    source = pathlib.Path(__file__).resolve().parent.parent / "src" / "convlens"
    text = "\n".join(p.read_text() for p in source.rglob("*.py"))
    assert not re.search(r"\bimport pickle\b|pickle\.load|torch\.load\((?![^)]*weights_only=True)", text)


def test_a_run_killed_after_its_first_epoch_says_it_is_unfinished_wherever_it_is_shown(small_mnist, tmp_path):
    from convlens.jobs.report import report
    from convlens.web.live import LiveRun

    out = tmp_path / "run"
    process = subprocess.Popen(train_command(small_mnist, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = lambda: runs.read_json(out / runs.HISTORY) if (out / runs.HISTORY).exists() else []  # noqa: E731
    deadline = time.monotonic() + 300
    while not history() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs = len(history())
    assert 1 <= epochs < EPOCHS, "the run finished before the kill; the test proves nothing"
    note = f"unfinished: {epochs} of 6 epochs trained; continue with convlens train --resume {out}"
    done = subprocess.run([sys.executable, "-m", "convlens", "eval", str(out)], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"COLUMNS": "300"})
    assert done.returncode == 0 and note in done.stdout
    assert note in report(out).read_text()
    assert LiveRun(out).info()["unfinished"] == note


def _loop(run):  # config.json -> a -> b -> a
    (run / runs.CONFIG).unlink()
    (run / "a").symlink_to("b")
    (run / "b").symlink_to("a")
    (run / runs.CONFIG).symlink_to("a")


RUN_FILE_DAMAGE = {  # a run file edited by hand or by another tool, and the line that names the problem
    "history-types": (runs.HISTORY, '[{"epoch": "one"}]', "history.json is not what convlens wrote: at [0].epoch, "
                                                          "input should be a valid integer"),
    "history-object": (runs.HISTORY, '{"epochs": 2}', "history.json is not what convlens wrote: at the top level, "
                                                      "input should be a valid list"),
    "history-nan": (runs.HISTORY, '[{"epoch": 1, "train_loss": NaN, "train_accuracy": 0.5, "lr": 0.1, "seconds": 1}]',
                    "at [0].train_loss, input should be a finite number"),
    "metrics-types": (runs.METRICS, '{"dataset": 3}', "metrics.json is not what convlens wrote: at dataset, "
                                                      "input should be a valid string"),
    "config-list": (runs.CONFIG, "[1, 2]", "a config is an object of sections, not list"),
    "config-loop": (runs.CONFIG, _loop, "config.json: Too many levels of symbolic links"),
}


@pytest.mark.parametrize("damage", list(RUN_FILE_DAMAGE))
def test_run_files_of_the_wrong_structure_are_one_clear_error(trained_run, tmp_path, damage):
    run = copy_run(trained_run, tmp_path / "run")
    name, content, message = RUN_FILE_DAMAGE[damage]
    if callable(content):
        content(run)
    else:
        (run / name).write_text(content)
    done = subprocess.run([sys.executable, "-m", "convlens", "report", str(run)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
