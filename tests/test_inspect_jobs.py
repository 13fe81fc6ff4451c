"""The inspection commands on a trained run, called through the CLI entry point in-process."""

from __future__ import annotations

import json

import pytest
import torch

from convlens.cli import main
from convlens.inspection.maps import feature_maps
from convlens.runs import load_run
from convlens.data import load_dataset
from convlens.speed import images_to_device


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return 0


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def opened(trained_run, small_mnist):
    ds = load_dataset(small_mnist)
    return load_run(trained_run), ds, images_to_device(ds.test_images, torch.device("cpu"))


def test_maps_compares_the_chosen_images_layer_by_layer(trained_run, opened, tmp_path):
    run, ds, x = opened
    assert run_cli("maps", trained_run, "--images", "4:2,9:1", "--layer", "conv1", "--layer", "conv3", "--out", tmp_path) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"maps_conv1.png", "maps_conv3.png", "maps.json"}
    report = json.loads((tmp_path / "maps.json").read_text())
    labels = ds.test_labels.tolist()
    fours = [i for i, y in enumerate(labels) if y == 4][:2]
    assert report["images"] == fours + [labels.index(9)]
    assert report["layers"]["conv3"]["shape"] == [128, 3, 3]
    expected = feature_maps(run.model, x[report["images"]], ["conv1"])["conv1"].amax((2, 3))
    assert torch.allclose(torch.tensor(report["layers"]["conv1"]["max_per_map"]), expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "conv7"], "unknown layer 'conv7'; layers are: conv1, pool1"),
        (["--images", "4:x"], "--images '4:x' must be CLASS:COUNT"),
        (["--images", "12:1"], "unknown class '12'"),
        (["--images", "4:500"], "only"),
        (["--index", "99999"], "test image 99999 is out of range"),
        (["--images", "4:1", "--index", "3"], "give --images or --index, not both"),
    ],
)
def test_maps_bad_input_is_one_line_and_exit_2(trained_run, tmp_path, capsys, args, message):
    assert run_cli("maps", trained_run, "--out", tmp_path, *args) == 2
    assert message in error_line(capsys)


def test_kernels_writes_weights_norms(trained_run, opened, tmp_path):
    run, _, _ = opened
    assert run_cli("kernels", trained_run, "--layer", "conv2", "--out", tmp_path) == 0
    report = json.loads((tmp_path / "kernels_conv2.json").read_text())
    assert report["shape"] == [64, 32, 3, 3]
    w = run.model.conv2.conv.weight.detach()
    assert torch.allclose(torch.tensor(report["norms"]), w.flatten(2).norm(dim=2))
    assert run_cli("kernels", trained_run, "--out", tmp_path) == 0
    assert (tmp_path / "kernels_conv1.png").is_file()


def test_patterns_ranks_maps_for_a_pair(trained_run, tmp_path, capsys):
    assert run_cli("patterns", trained_run, "--classes", "4,9", "--out", tmp_path) == 0
    report = json.loads((tmp_path / "patterns.json").read_text())["conv3"]
    assert len(report["mean_activation"]) == 10 and len(report["mean_activation"][0]) == 128
    ranked = [abs(r["effect_size"]) for r in report["pairs"]["4,9"]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 128
    assert (tmp_path / "patterns_conv3_4_vs_9.png").is_file()
    for k, dead in report["never_fires"].items():
        assert all(report["fire_rate"][int(k)][m] == 0 for m in dead)
    assert run_cli("patterns", trained_run, "--layer", "conv2", "--out", tmp_path) == 0
    assert set(json.loads((tmp_path / "patterns.json").read_text())) == {"conv2", "conv3"}
    assert run_cli("patterns", trained_run, "--classes", "4,4", "--out", tmp_path) == 2
    assert "two different classes" in error_line(capsys)


def test_top_finds_each_maps_strongest_images(trained_run, opened, tmp_path):
    run, _, x = opened
    assert run_cli("top", trained_run, "--layer", "conv2", "--k", "3", "--out", tmp_path) == 0
    report = json.loads((tmp_path / "top_conv2.json").read_text())
    assert report["receptive_field"] == {"size": 8, "jump": 2, "offset": 0}
    maps = feature_maps(run.model, x, ["conv2"])["conv2"]  # (512, 64, 11, 11)
    peaks = maps.amax((2, 3))  # (512, 64)
    for m in (0, 17, 63):
        entry = report["maps"][m]
        assert entry["indices"] == torch.sort(peaks[:, m], descending=True, stable=True).indices[:3].tolist()
        i, (r, c) = entry["indices"][0], entry["positions"][0]
        assert maps[i, m, r, c].item() == pytest.approx(entry["values"][0], rel=1e-5)
    # Pages are named by the maps they hold, and the index says where each map is.
    assert sorted(p.name for p in tmp_path.glob("top_conv2_maps_*.png")) == [
        f"top_conv2_maps_{m:02d}-{m + 7:02d}.png" for m in range(0, 64, 8)]
    assert report["maps"][17]["page"] == "top_conv2_maps_16-23.png" and (tmp_path / report["overview"]).is_file()


def test_top_draws_only_the_maps_asked_for(trained_run, tmp_path, capsys):
    assert run_cli("top", trained_run, "--layer", "conv2", "--maps", "52,3", "--out", tmp_path) == 0
    assert sorted(p.name for p in tmp_path.glob("top_conv2_maps_*.png")) == ["top_conv2_maps_52_03.png"]
    assert [m["page"] for m in json.loads((tmp_path / "top_conv2.json").read_text())["maps"][:4]] == [
        None, None, None, "top_conv2_maps_52_03.png"]
    assert run_cli("top", trained_run, "--layer", "conv2", "--maps", "64", "--out", tmp_path) == 2
    assert "conv2 has maps 0-63; there is no map 64" in error_line(capsys)


def test_filters_demo_and_its_range_check(trained_run, tmp_path, capsys):
    assert run_cli("filters-demo", trained_run, "--image", "3", "--out", tmp_path) == 0
    assert (tmp_path / "filters_demo_3.png").is_file()
    assert run_cli("filters-demo", trained_run, "--image", "5000", "--out", tmp_path) == 2
    assert "out of range" in error_line(capsys)


def test_probe_reads_classes_off_layers(trained_run, tmp_path):
    assert run_cli("probe", trained_run, "--layer", "conv3", "--layer", "logits", "--train-size", "1000", "--out", tmp_path) == 0
    report = json.loads((tmp_path / "probe.json").read_text())
    assert set(report["layers"]) == {"conv3", "logits"}
    assert report["layers"]["conv3"]["features"] == 1152 and report["layers"]["logits"]["features"] == 10
    assert abs(report["layers"]["logits"]["linear"] - report["model_accuracy"]) <= 0.03


def test_inspection_writes_under_the_run_folder_by_default(trained_run):
    assert run_cli("kernels", trained_run) == 0
    assert (trained_run / "kernels" / "kernels_conv1.png").is_file()


def test_a_result_shows_its_figures_inline_in_a_notebook_and_reprs_in_a_line(trained_run, tmp_path, monkeypatch):
    """`convlens.maps(...)` printed 858 characters of paths and numbers, and no figure, in Jupyter."""
    import base64

    import convlens

    result = convlens.maps(trained_run, [0, 1], ["conv1", "conv2"], out=tmp_path)
    assert repr(result) == "Result(3 files: maps_conv1.png, maps_conv2.png, maps.json; data: images, labels, " \
                           "predictions, layers)"
    page = result._repr_html_()
    inlined = [base64.b64decode(chunk.split("'")[0]) for chunk in page.split("data:image/png;base64,")[1:]]
    assert inlined == [(tmp_path / "maps_conv1.png").read_bytes(), (tmp_path / "maps_conv2.png").read_bytes()]
    assert f"<figcaption>{tmp_path / 'maps_conv2.png'}</figcaption>" in page
    monkeypatch.chdir(tmp_path.parent)  # a notebook's folder: captions name files from there, not from /
    assert f"<figcaption>{tmp_path.name}/maps_conv2.png</figcaption>" in result._repr_html_()


def test_a_run_reprs_in_a_line_and_shows_its_plots_in_a_notebook(mnist_run):
    from convlens.runs import Run

    run = Run(mnist_run)
    accuracy = run.metrics["test_accuracy"]
    assert repr(run) == f"Run({mnist_run}: fast-mlp on mnist, 1 epoch, test accuracy {accuracy:.2%})"
    page = run._repr_html_()
    assert page.count("data:image/png;base64,") == 3 and str(mnist_run / "plots" / "curves.png") in page


def test_a_runs_jobs_are_its_methods_and_take_test_images_as_the_cli_does(trained_run, opened, tmp_path):
    """In a notebook `run.maps("4:3")` is the whole cell: the job on this run, its figures shown inline."""
    from convlens.errors import UserError

    run, ds, x = opened
    fours = torch.nonzero(ds.test_labels == 4).flatten()[:3].tolist()
    result = run.maps("4:3", ["conv2"], out=tmp_path / "maps")
    assert result.data["images"] == fours and result.data["labels"] == [4, 4, 4]
    expected = feature_maps(run.model, x[fours], ["conv2"])["conv2"]
    assert result.data["layers"]["conv2"]["max_per_map"] == expected.amax((2, 3)).tolist()
    assert result._repr_html_().count("data:image/png;base64,") == 1
    top = run.top("conv1", k=2, maps=[5], out=tmp_path / "top")
    assert [p.name for p in top.files] == ["top_conv1_overview.png", "top_conv1_maps_05-05.png", "top_conv1.json"]
    assert top.data["maps"][5]["page"] == "top_conv1_maps_05-05.png" and top.data["maps"][4]["page"] is None
    assert run.test_indices(7) == [7] and run.test_indices([3, 1]) == [3, 1]
    with pytest.raises(UserError, match="images '4' must be CLASS:COUNT, e.g. 4:3,9:1"):
        run.maps("4")
    with pytest.raises(UserError, match="test image 99999 is out of range"):
        run.maps([99999])
