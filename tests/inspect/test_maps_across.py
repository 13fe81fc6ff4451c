"""Maps across images (the articles' "three 4s against a 9"): the maps picked, the numbers, the figure's legibility."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import copy_run
from test_figures import assert_legible
from convlens.draw import inspect_figures as views
from convlens.inspection.maps import feature_maps
from convlens.jobs.maps import maps_across
from convlens.runs import Run


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    return Run(copy_run(trained_run, tmp_path_factory.mktemp("across") / "run"))


def cohens_d(means: torch.Tensor, labels: torch.Tensor, a: int, b: int) -> torch.Tensor:
    xa, xb = means[labels == a].double(), means[labels == b].double()
    pooled = (((len(xa) - 1) * xa.var(0) + (len(xb) - 1) * xb.var(0)) / (len(xa) + len(xb) - 2)).sqrt()
    d = (xa.mean(0) - xb.mean(0)) / pooled
    return torch.where(pooled > 0, d, 0).float()  # a map dead on both classes separates nothing


def test_the_maps_that_differ_most_are_the_largest_effect_sizes_and_the_difference_is_of_the_means(run, tmp_path):
    images = run.first_of_classes([("4", 3), ("1", 1), ("9", 2)])
    result = maps_across(run, images, "conv2", differing=("4", "9"), count=5, out=tmp_path)
    all_maps = feature_maps(run.model, run.test_inputs, ["conv2"])["conv2"]  # the whole test set, by hand
    d = cohens_d(all_maps.mean((2, 3)), run.test_labels, 4, 9)
    expected = torch.argsort(d.abs(), descending=True)[:5].tolist()
    assert result.data["maps"] == expected
    assert result.data["effect_size"] == pytest.approx(d[expected].tolist(), rel=1e-4)
    shown = all_maps[images][:, expected]  # (B, M, h, w)
    assert torch.tensor(result.data["mean_per_map_and_image"]) == pytest.approx(shown.mean((2, 3)).T, abs=1e-5)
    assert [p.name for p in result.files] == ["maps_conv2_4_vs_9.png", "maps_conv2_4_vs_9.json"]


def test_chosen_maps_by_number_and_bad_numbers(run, tmp_path):
    images = run.first_of_classes([("4", 2)])
    result = maps_across(run, images, "conv3", chosen=[74, 3], out=tmp_path)
    assert result.data["maps"] == [74, 3] and result.data["effect_size"] is None
    with pytest.raises(Exception, match="map 128 does not exist; conv3 has maps 0-127"):
        maps_across(run, images, "conv3", chosen=[128], out=tmp_path)
    with pytest.raises(Exception, match="two different classes"):
        maps_across(run, images, "conv3", differing=("4", "4"), out=tmp_path)


def test_the_figure_labels_every_row_legibly_frames_every_tile_and_shows_the_difference():
    torch.manual_seed(0)
    maps = torch.rand(4, 3, 5, 5)  # 4 images, 3 maps
    difference = (maps[:2].mean(0) - maps[3:].mean(0), "mean 4 − mean 9")
    fig = views.maps_across_figure(torch.zeros(4, 28, 28, dtype=torch.uint8), maps, "conv3", [74, 52, 3],
                                   [f"#{i}" for i in range(4)], effect=[3.1, -2.0, 1.0], difference=difference)
    tiles = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(tiles) == 4 + 3 * 4 + 3  # inputs, maps, difference column
    assert all(ax.spines["left"].get_visible() for ax in tiles)  # framed
    labels = [ax.get_ylabel() for ax in tiles if ax.get_ylabel()]
    assert labels == ["map 74\nd = +3.10", "map 52\nd = -2.00", "map 3\nd = +1.00"]
    difference_tiles = [ax for ax in tiles if ax.images[0].get_cmap().name == "RdBu_r"]
    assert len(difference_tiles) == 3
    assert torch.allclose(torch.as_tensor(difference_tiles[0].images[0].get_array().data), difference[0][0])
    assert_legible(fig)  # >= 8 px, no text over text


def test_the_command_line_defaults_to_three_of_each_class(run):
    done = subprocess.run([sys.executable, "-m", "convlens", "maps", str(run.path), "--top-differing", "4,9",
                           "--layer", "conv3", "--count", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = __import__("json").loads((run.path / "maps" / "maps_conv3_4_vs_9.json").read_text())
    assert data["images"] == run.first_of_classes([("4", 3), ("9", 3)]) and len(data["maps"]) == 4
