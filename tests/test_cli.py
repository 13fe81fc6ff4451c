"""The command line as a user runs it: real subprocesses, exit codes, one-line errors, run folders."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

from conftest import write_idx, write_idx_folder


def convlens(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_user_error(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0], lines[0]


def test_summary_json_has_the_articles_numbers():
    done = convlens("summary", "--model", "simple", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["total_params"] == 104202
    assert [layer["receptive_field"] for layer in out["layers"]][:5] == [3, 4, 8, 10, 18]


def test_a_mistyped_model_is_named_before_anything_is_written(tmp_path):
    done = convlens("train", "--model", "simpel", "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "unknown model 'simpel'; did you mean 'simple'?" in done.stderr
    assert "training" not in done.stdout and not (tmp_path / "run").exists()


def test_version_answers_without_loading_torch():
    done = subprocess.run([sys.executable, "-c", "import sys; from convlens.cli import main; main(['--version']); "
                           "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[:2] == [f"convlens {version('convlens')}", "False"], done.stderr


HEAVY = ("torch", "matplotlib", "captum", "scipy")  # each costs 0.3-2.5 s to import on 2 cores


@pytest.mark.parametrize("command", [[], ["train"], ["maps"], ["oip"], ["explain"], ["compare"], ["serve"]])
def test_help_answers_without_loading_torch(command):
    """--help teaches: it must answer at once (< 0.5 s), so no command's flags may import torch or its kin."""
    script = ("import sys\nfrom convlens.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
              f"    print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", script, *command, "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
    assert "usage: convlens" in done.stdout


def test_summary_draws_the_layer_graph(tmp_path):
    done = convlens("summary", "--model", "simple", "--graph", str(tmp_path / "graph.png"))
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'graph.png'}" in " ".join(done.stdout.split())
    from PIL import Image

    width, height = Image.open(tmp_path / "graph.png").size
    assert height > 1.5 * width  # a chain: eight boxes, one below the other


def test_data_info_prints_counts_and_class_balance(small_mnist, mnist):
    done = convlens("data", "info", small_mnist)
    assert done.returncode == 0, done.stderr
    assert "train 2048, test 512, images 28x28 uint8, 10 classes" in done.stdout
    train_n = np.bincount(mnist.train_labels[:2048].numpy())
    test_n = np.bincount(mnist.test_labels[:512].numpy())
    for c in range(10):
        assert re.search(rf"{c} .* {c} .* {train_n[c]} .* {test_n[c]} ", done.stdout), c


def test_fashion_info_shows_class_names():
    done = convlens("data", "info", "fashion-mnist")
    assert done.returncode == 0, done.stderr
    assert "T-shirt/top" in done.stdout and "Ankle boot" in done.stdout and "6000 │ 1000" in done.stdout


@pytest.fixture
def corrupt_folders(tmp_path):
    rng = np.random.default_rng(0)
    good = (rng.integers(0, 256, (8, 28, 28)), np.arange(8) % 10, rng.integers(0, 256, (4, 28, 28)), np.arange(4))
    folders = {}
    for name in ("truncated", "magic", "count"):
        folders[name] = write_idx_folder(tmp_path / name, *good)
    raw = (folders["truncated"] / "train-images-idx3-ubyte").read_bytes()
    (folders["truncated"] / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    (folders["magic"] / "t10k-labels-idx1-ubyte").write_bytes(b"\x12\x34" + raw[2:40])
    write_idx(folders["count"] / "t10k-labels-idx1-ubyte", np.arange(3))
    return folders


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "idx:/no/such/folder"], "data folder /no/such/folder does not exist"),
        (["data", "info", "cifar"], "unknown dataset 'cifar'"),
        (["data", "info", "idx:{truncated}"], "is truncated"),
        (["data", "info", "idx:{magic}"], "bad magic number"),
        (["data", "info", "idx:{count}"], "4 test images but 3 labels"),
        (["summary", "--model", "resnet50"], "unknown model 'resnet50'; use a preset (simple, simple-mlp"),
        (["summary", "--model", "conv32k3-flatten-dense9"], "must be dense10"),
        (["train", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
        (["train", "--lr", "-1"], "lr must be positive"),
        (["train", "--schedule", "sometimes"], "argument --schedule: invalid choice"),
        (["train", "--dataset", "idx:/no/such/folder"], "does not exist"),
        (["train", "--resume", "/no/such/run"], "run folder /no/such/run does not exist"),
        (["eval", "/no/such/run"], "run folder /no/such/run does not exist"),
        (["data", "fetch", "cifar"], "argument name: invalid choice"),
        (["trian"], "invalid choice: 'trian' (choose from 'data', "),
        (["trian"], "; did you mean 'train'? (see convlens --help)"),
        (["train", "--modle", "simple"], "unrecognized arguments: --modle simple; did you mean --model? "
                                         "(see convlens train --help)"),
        (["train", "--epoch", "1"], "unrecognized arguments: --epoch 1; did you mean --epochs?"),  # no silent guess
        (["maps", "RUN", "--layr", "conv1"], "did you mean --layer?"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, message, corrupt_folders):
    assert_user_error(convlens(*(a.format(**corrupt_folders) for a in args)), message)


def test_missing_data_is_said_before_training_is_announced():
    done = convlens("train", "--dataset", "idx:/no/such/folder", "--out", "/tmp/never-written")
    assert_user_error(done, "data folder /no/such/folder does not exist")
    assert done.stdout == ""


def test_every_command_teaches_by_an_example_that_parses_and_shows_its_defaults():
    import shlex

    from convlens.cli import EXAMPLES, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(EXAMPLES) == set(commands)
    for name, example in EXAMPLES.items():
        args = parser.parse_args(shlex.split(example)[1:])
        assert args.command == name and f"example: {example}" in commands[name].format_help()
    assert "(default: gray)" in commands["maps"].format_help()


def test_train_then_eval_writes_the_whole_run_folder(small_mnist, tmp_path):
    run = tmp_path / "run"
    done = convlens("train", "--dataset", small_mnist, "--val-size", "256", "--epochs", "1", "--batch-size", "64",
                    "--out", run)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and str(run) in done.stdout.replace("\n", "")
    for name in ("config.json", "history.json", "model.safetensors", "metrics.json",
                 "plots/curves.png", "plots/confusion.png", "plots/misclassified.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 512
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / 512)
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 1

    # A second train into the same folder is refused and changes nothing.
    before = (run / "model.safetensors").read_bytes()
    assert_user_error(convlens("train", "--dataset", small_mnist, "--out", run), "already holds a run")
    assert (run / "model.safetensors").read_bytes() == before

    (run / "metrics.json").unlink()
    done = convlens("eval", run)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "metrics.json").read_text())["confusion_matrix"] == metrics["confusion_matrix"]


def test_a_sweep_in_one_process_counts_its_runs_and_names_each_epoch_line(small_mnist, tmp_path):
    done = convlens("train", "--dataset", small_mnist, "--val-size", "256", "--epochs", "1", "--seeds", "3,5",
                    "--jobs", "1", "--out", tmp_path / "simple")
    assert done.returncode == 0, done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert f"run 1 of 2: {tmp_path / 'simple-s3'}" in said and f"run 2 of 2: {tmp_path / 'simple-s5'}" in said
    assert "simple-s3 epoch 1/1" in said and "simple-s5 epoch 1/1" in said


def test_resume_of_a_finished_run_rejects_other_flags(small_mnist, tmp_path):
    run = tmp_path / "run"
    assert convlens("train", "--dataset", small_mnist, "--val-size", "0", "--epochs", "1", "--out", run).returncode == 0
    assert_user_error(convlens("train", "--resume", run, "--lr", "0.5"), "give no other training flags")


def test_train_seeds_writes_one_run_per_seed_with_its_own_weights(small_mnist, tmp_path):
    base = tmp_path / "simple"
    done = convlens("train", "--dataset", small_mnist, "--val-size", "256", "--epochs", "1", "--seeds", "3,5",
                    "--out", base)
    assert done.returncode == 0, done.stderr
    runs = [tmp_path / "simple-s3", tmp_path / "simple-s5"]
    seeds = [json.loads((r / "config.json").read_text())["train"]["seed"] for r in runs]
    assert seeds == [3, 5]
    assert (runs[0] / "model.safetensors").read_bytes() != (runs[1] / "model.safetensors").read_bytes()
    assert f"convlens compare {runs[0]} {runs[1]}" in done.stdout.replace("\n", "")
    # Seeds whose folders exist are refused before anything is trained.
    assert_user_error(convlens("train", "--dataset", small_mnist, "--seeds", "5,6", "--out", base), "already exist")
    assert not (tmp_path / "simple-s6").exists()


@pytest.mark.parametrize("seeds", ["1,x", "1,1", ""])
def test_train_seeds_must_be_distinct_integers(seeds, tmp_path):
    assert_user_error(convlens("train", "--seeds", seeds, "--out", tmp_path / "r"), "must be distinct comma-separated")


def test_class_names_are_taken_in_any_case(tmp_path):
    from conftest import untrained_run

    from convlens.runs import Run

    run = Run(untrained_run(tmp_path / "fashion", "fashion-mnist"))
    assert [run.class_index(n) for n in ("shirt", "SHIRT", "Shirt", "6", "ankle boot")] == [6, 6, 6, 6, 9]
    assert run.first_of_classes([("shirt", 2)]) == run.first_of_classes([("Shirt", 2)])
    with pytest.raises(Exception, match="unknown class 'shrit'; did you mean 'Shirt'\\? classes are 0-9"):
        run.class_index("shrit")


def test_a_folder_of_many_written_files_is_one_line_and_a_few_files_are_listed(monkeypatch, tmp_path):
    from rich.console import Console

    from convlens.cli import flags

    screen = io.StringIO()
    monkeypatch.setattr(flags, "console", Console(file=screen, soft_wrap=True, width=200))
    pages = [tmp_path / "top" / f"top_conv3_maps_{k:03d}-{k + 7:03d}.png" for k in range(0, 128, 8)]
    flags.print_written([*pages, tmp_path / "top" / "top_conv3.json", tmp_path / "report.html"])
    assert screen.getvalue().splitlines() == [
        f"wrote 17 files in {tmp_path / 'top'}: top_conv3_maps_000-007.png ... top_conv3.json", f"wrote {tmp_path / 'report.html'}"]


def test_a_job_into_its_run_says_how_many_files_the_folder_holds(trained_run, tmp_path, monkeypatch):
    """"wrote 6 files" beside a folder of 7: the source.json stamp was written and not named."""
    from conftest import copy_run
    from rich.console import Console

    from convlens.cli import flags, main

    screen = io.StringIO()
    monkeypatch.setattr(flags, "console", Console(file=screen, soft_wrap=True, width=300))
    run = copy_run(trained_run, tmp_path / "run")
    main(["maps", str(run), "--images", "4:1"])
    (line,) = screen.getvalue().splitlines()
    held = sorted(p.name for p in (run / "maps").iterdir())
    assert line == f"wrote {len(held)} files in {run / 'maps'}: maps_conv1.png ... source.json" and "maps.json" in held


def test_curves_overlay_runs_and_refuse_a_run_without_history(trained_run, tmp_path):
    import shutil

    from conftest import untrained_run

    other = shutil.copytree(trained_run, tmp_path / "seed1")
    done = convlens("curves", trained_run, other)
    assert done.returncode == 0, done.stderr
    figure = trained_run.parent / "curves-run-vs-seed1.png"  # beside the first run
    assert f"wrote {figure}" in " ".join(done.stdout.split()) and figure.stat().st_size > 10_000
    assert re.search(r"^run: 2 epochs, last train loss \d\.\d{4}, validation accuracy \d+\.\d\d%$", done.stdout, re.M)
    assert_user_error(convlens("curves", untrained_run(tmp_path / "bare", "mnist")), "has no training history to draw")
