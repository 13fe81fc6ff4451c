"""Figures a reader can read: every text at least 8 px tall as saved, no text over text, tiles framed or apart.

Each figure kind is drawn from small, known inputs and laid out as figures.save writes it (110 dpi).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from convlens.draw import figures
from convlens.draw import inspect_figures as views
from convlens.draw.oip_figures import oip_gallery_figure
from convlens.oip import OIPs

DPI = 110  # figures.save's


def drawn_tick_labels(axis) -> list:
    """The tick labels inside the axis's view (matplotlib keeps labels of ticks beyond it, undrawn)."""
    lo, hi = sorted(axis.get_view_interval())
    return [label for value, label in zip(axis.get_ticklocs(), axis.get_ticklabels()) if lo <= value <= hi]


def texts(fig):
    found = [fig._suptitle] if fig._suptitle else []
    for ax in fig.axes:
        found += [ax.title, *ax.texts]
        if ax.axison:  # an axes turned off draws neither labels nor ticks
            found += [ax.xaxis.label, ax.yaxis.label, *drawn_tick_labels(ax.xaxis), *drawn_tick_labels(ax.yaxis)]
        if ax.get_legend():
            found += ax.get_legend().get_texts()
    return [t for t in found if t.get_text().strip() and t.get_visible()]


def assert_legible(fig) -> None:
    fig.set_dpi(DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = texts(fig)
    assert shown
    small = [(t.get_text(), t.get_fontsize()) for t in shown if t.get_fontsize() * DPI / 72 < 8]
    assert not small, f"text under 8 px: {small[:5]}"
    # Boxes grown by 2 px: texts that touch ("61% with a partnerconv2d_1") run into each other as read.
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(1, 1).padded(2)) for t in shown]
    over = [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]
    assert not over, f"text over text: {over[:3]}"
    plt.close(fig)


HISTORY = [{"epoch": 1, "train_loss": 0.3, "train_accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.97, "lr": 0.0}]


def test_curves_of_one_epoch_give_the_point_room_and_draw_the_schedule():
    schedule = [(k / 10, 0.1 * min(k, 10 - k) / 5) for k in range(11)]
    fig = figures.curves({"run": (HISTORY, schedule)})
    assert fig.axes[0].get_xlim() == (0.5, 1.5)  # not 0.96-1.04 around one point
    assert fig.axes[2].get_title() == "learning rate" and len(fig.axes[2].lines[0].get_xdata()) == 11
    assert_legible(fig)


def test_curves_draw_every_step_and_overlay_runs_in_their_own_colours():
    steps = [2.3, 1.1, 0.7, 0.5]
    stepped = [{**HISTORY[0], "step_loss": steps}, {**HISTORY[0], "epoch": 2, "step_loss": [0.4, 0.3, 0.3, 0.2]}]
    fig = figures.curves({"a": (stepped, None), "b": (HISTORY, None)})
    raw, smooth, *_ = fig.axes[0].lines
    assert list(raw.get_xdata()) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]  # step s of epoch e ends at e-1+(s+1)/n
    assert list(raw.get_ydata())[:4] == steps and fig.axes[0].get_xlim() == (0, 2)
    colours = {line.get_color() for line in fig.axes[1].lines}
    assert colours == {"C0", "C1"}  # run a, run b
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "a: train, per step", "a: train, per epoch", "a: validation", "b: train, per epoch", "b: validation"]
    assert_legible(fig)


def test_sweep_bars_are_errors_from_zero():
    rows = [{"lr": 0.05, "test_accuracy": 0.9903}, {"lr": 0.1, "test_accuracy": 0.9899}]
    fig = figures.sweep(rows, ["lr"])
    assert fig.axes[0].get_xlim()[0] == 0
    assert [round(p.get_width(), 2) for p in fig.axes[0].patches] == [0.97, 1.01]
    assert_legible(fig)


def test_feature_maps_are_numbered_from_outside_their_tiles():
    maps = torch.rand(2, 32, 26, 26)  # 6 a row
    fig = views.feature_map_figure(torch.zeros(2, 28, 28, dtype=torch.uint8), maps, "conv1", ["#0: 7", "#1: 2"])
    tiles = fig.axes[1]  # axes: each image above its mosaic of maps, then the colour bar
    # Row numbers left of the mosaic, column numbers above it: none over a map.
    rows = {t.get_position()[1]: t.get_text() for t in tiles.texts if t.get_position()[0] < 0 and t.get_ha() == "right"}
    cols = {t.get_position()[0]: t.get_text() for t in tiles.texts if t.get_position()[1] > 1 and t.get_ha() == "center"}
    assert len(rows) + len(cols) == len(tiles.texts)
    assert list(rows.values()) == ["0", "6", "12", "18", "24", "30"] and list(cols.values())[:3] == ["+0", "+1", "+2"]
    # Map 20 is row 3 (from 18), column 2: its centre, with tiles of 26 pixels and gaps of 1, is where both labels point.
    assert rows[3 * 27 + 12.5] == "18" and cols[2 * 27 + 12.5] == "+2"
    bar = fig.axes[-1]  # one colour bar for both images' maps, in the layer's units
    assert bar.get_ylabel() == "conv1 activation"
    assert bar.get_ylim() == pytest.approx((maps.min().item(), maps.max().item()))
    assert_legible(fig)


def test_a_layer_of_2048_maps_is_numbered_with_a_few_dozen_labels():
    fig = views.feature_map_figure(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.rand(1, 2048, 7, 7), "layer4",
                                   ["#0: 7"])
    tiles = fig.axes[1]
    assert len(tiles.texts) <= 2 * views.MAX_TICKS and not len(tiles.get_yticks()) + len(tiles.get_xticks())


def test_the_misclassified_gallery_names_each_test_index_legibly():
    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    labels, predictions = torch.arange(12) % 10, (torch.arange(12) + 3) % 10
    fig = figures.misclassified(torch.zeros(12, 28, 28, dtype=torch.uint8), labels, predictions, names)
    titles = [t.get_text() for t in fig.axes[0].texts]
    assert titles[:2] == ["#0\nDress (T-shirt/top)", "#1\nCoat (Trouser)"] and len(titles) == 12
    assert_legible(fig)


def test_oip_gallery_labels_every_tile_and_frames_it():
    m, k = 16, 1
    oips = OIPs(layer="conv1", objective="mean", index=list(range(m)), images=torch.rand(m, k, 1, 28, 28),
                activation=torch.rand(m, k) + 0.5, start=torch.rand(m, k), pre_final=torch.rand(m, k), steps=8,
                seconds=0.1)
    fig = oip_gallery_figure(oips, torch.rand(m) + 0.2, None)
    assert len(fig.axes[0].texts) == m and len(fig.axes[0].patches) == m  # a label and a frame per tile
    assert_legible(fig)


def test_oips_are_cropped_to_their_field_beside_the_best_test_image_and_class_oips_say_how_they_are_seen():
    m = 4
    images = torch.zeros(m, 1, 1, 28, 28)
    images[..., 13:16, 13:16] = 1.0  # the centre unit's 3x3 field (of conv1's 26x26 map) white, the rest black
    oips = OIPs(layer="conv1", objective="mean", index=list(range(m)), images=images, activation=torch.ones(m, 1),
                start=torch.zeros(m, 1), pre_final=torch.ones(m, 1), steps=8, seconds=0.1)
    best_images = torch.full((m, 1, 28, 28), 0.5)
    fig = oip_gallery_figure(oips, torch.ones(m), None, field=(13, 13, 16, 16), best_images=best_images)
    canvas = fig.axes[0].images[0].get_array()  # RGBA: each tile is the zoomed crop, a gap, the best image
    assert (canvas[:28, :28, 0] == 255).all()  # the 3x3 crop fills the whole tile
    assert (canvas[:28, 29:57, 0] == 127).all()  # the test image beside it
    assert "3x3 receptive field" in fig._suptitle.get_text()
    assert_legible(fig)
    logits = OIPs(layer="logits", objective="logit", index=[4, 9], images=torch.rand(2, 1, 1, 28, 28),
                  activation=torch.ones(2, 1), start=torch.zeros(2, 1), pre_final=torch.ones(2, 1), steps=8,
                  seconds=0.1)
    fig = oip_gallery_figure(logits, torch.ones(2), ["4", "9"], classified=["4", "7"])
    labels = [(t.get_text(), t.get_color()) for t in fig.axes[0].texts]
    assert labels == [("4: 1 (1.0x), seen as 4", "black"), ("9: 1 (1.0x), seen as 7", "red")]
    assert_legible(fig)


def test_maps_across_images_are_legible():
    torch.manual_seed(0)
    fig = views.maps_across_figure(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.rand(3, 4, 3, 3), "conv3",
                                   [74, 52, 3, 9], ["#1: 4\n(pred 4)", "#2: 4\n(pred 4)", "#3: 9\n(pred 9)"],
                                   effect=[3.2, -3.1, 2.0, 1.5],
                                   difference=(torch.randn(4, 3, 3), "mean 4 − mean 9\nred: 4 stronger"))
    assert_legible(fig)


def test_top_images_are_framed_and_fields_at_the_border_are_not_cut():
    from convlens.inspection.maps import TopActivations
    from convlens.layers import Field

    k, maps = 3, [0, 1]
    top = TopActivations("conv2", values=torch.rand(2, k), indices=torch.arange(2 * k).reshape(2, k),
                         positions=torch.tensor([[[10, 10]] * k, [[0, 0]] * k]))  # map 1 peaks at the corner
    fig = views.top_figure(torch.randint(0, 255, (6, 28, 28), dtype=torch.uint8), top, Field(8, 2, 3), maps, "conv2")
    crops, wholes = fig.axes
    assert len(crops.patches) == 2 * k  # a frame per crop
    boxes = [p for p in wholes.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(boxes) == 2 * k and not any(p.get_clip_on() for p in boxes)
    assert_legible(fig)


def test_filters_demo_headings_do_not_run_into_the_kernel_labels():
    names = ["sobel x", "sobel y", "blur"]
    fig = views.filters_demo_figure(torch.zeros(28, 28, dtype=torch.uint8), names, torch.randn(3, 1, 3, 3),
                                    torch.rand(3, 26, 26), torch.randn(16, 1, 3, 3), torch.rand(16, 26, 26))
    assert_legible(fig)


def test_class_patterns_have_a_labelled_colour_bar_and_the_legend_off_the_data():
    fire = torch.ones(10, 64)
    fire[3, 5] = 0
    fig = views.class_activation_figure(torch.rand(10, 64), fire, [str(i) for i in range(10)], "conv2")
    data, bar = fig.axes
    assert bar.get_ylabel() == "mean activation"
    fig.canvas.draw()
    legend = data.get_legend().get_window_extent()
    assert legend.y0 >= data.get_window_extent().y1 - 1  # above the cells, not over them
    assert_legible(fig)


def test_attributions_carry_their_colour_scale_and_a_zero_map_says_so():
    from convlens.draw.explain_figures import explain_figure, sanity_figure

    maps = {"saliency": torch.randn(28, 28), "gradcam": torch.randn(28, 28)}
    fig = explain_figure(torch.rand(28, 28), {"7": maps}, torch.softmax(torch.randn(10), 0),
                         [str(i) for i in range(10)], 7, {})
    bars = [ax for ax in fig.axes if ax.get_xlabel().startswith("each map in its own range")]
    assert len(bars) == 1 and [t.get_text() for t in bars[0].get_xticklabels()] == ["against (−max)", "0",
                                                                                   "towards (+max)"]
    plt.close(fig)
    result = {"methods": {"gradcam": [0.1]}, "layers": ["logits"],
              "verdicts": {"gradcam": "changes with the weights: ..."},
              "maps": {"gradcam": [torch.rand(1, 28, 28), torch.zeros(1, 28, 28)]}}
    fig = sanity_figure(torch.rand(28, 28), result)
    assert [t.get_text() for t in fig.axes[1].texts] == ["all zero"] and not fig.axes[0].texts
    assert fig.axes[0].get_title() == "Grad-CAM, trained:\nchanges with the weights"
    assert_legible(fig)


def test_matched_pairs_wrap_into_rows_and_a_flat_oip_is_labelled():
    from convlens.draw.compare_figures import PAIRS_PER_ROW, kernel_pairs_figure, oip_pairs_figure

    n = 32
    fig = kernel_pairs_figure(torch.randn(n, 1, 3, 3), torch.randn(n, 1, 3, 3), torch.randperm(n), torch.rand(n),
                              ("seed-0", "seed-1"))
    width, height = fig.get_size_inches() * DPI
    assert len(fig.axes) == 2 * n + 1 and width < 1100 and height > 400  # 4 rows of 8 pairs and a colour bar, not a strip
    assert_legible(fig)
    oips = torch.rand(4, 1, 28, 28)
    oips[2] = 0.5  # a search that never made its map fire
    fig = oip_pairs_figure(oips, oips, torch.arange(4), torch.tensor([0.9, 0.8, 0.7, 0.6]), "conv1", ("a", "b"))
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes == ["flat: the map\nnever fired"] * 2 and PAIRS_PER_ROW == 8
    assert_legible(fig)


def test_compare_figures_keep_titles_apart_and_legends_off_the_bars():
    """docs/figures/14-keras-vs-convlens.png read "61% with a partnerconv2d_1"; its legend covered the bars."""
    from convlens.draw.compare_figures import matched_correlation_figure

    torch.manual_seed(0)
    layers = {name: torch.rand(n) for name, n in (("conv2d", 32), ("conv2d_1", 64), ("conv2d_2", 128))}
    untrained = {name: torch.rand(len(corr)) * 0.5 for name, corr in layers.items()}
    fig = matched_correlation_figure(layers, {"untrained": untrained})
    assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1  # one legend, below the panels
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert all(legend.y1 < ax.get_window_extent().y0 for ax in fig.axes)
    assert_legible(fig)


def test_matched_kernels_have_a_colour_scale():
    from convlens.draw.compare_figures import kernel_pairs_figure

    fig = kernel_pairs_figure(torch.randn(8, 1, 3, 3), torch.randn(8, 1, 3, 3), torch.arange(8), torch.rand(8), ("a", "b"))
    bar = fig.axes[-1]
    assert bar.get_ylabel() == "kernel weight" and bar.get_ylim()[0] == -bar.get_ylim()[1]
    assert_legible(fig)


def test_the_layer_graph_shows_a_residual_nets_skips_and_joins():
    """Each join sits below both layers it reads; an identity skip is an arc beside the boxes it passes."""
    import sys
    from pathlib import Path

    from convlens.draw.graph_figure import graph_layout, layer_graph
    from convlens.importers import import_module
    from convlens.layers import layer_table

    sys.path.insert(0, str(Path(__file__).parent / "importers"))
    from nets import resnet18

    table = layer_table(import_module(resnet18(10, width=8), (3, 32, 32)).model)
    joins = [layer for layer in table if len(layer.inputs) == 2]
    assert [j.name for j in joins] == [f"layer{s}_{b}" for s in range(1, 5) for b in range(2)]  # every block's sum
    assert joins[0].inputs == ("layer1_0_conv2", "maxpool")
    assert joins[2].inputs == ("layer2_0_conv2", "layer2_0_downsample_0")
    places = graph_layout(table)
    for layer in table:
        assert all(places[i][1] < places[layer.name][1] for i in layer.inputs)
    assert places["layer2_0_conv1"][0] != places["layer2_0_downsample_0"][0]  # the two branches side by side
    fig = layer_graph(table)
    arcs = [p for p in fig.axes[0].patches if p.get_connectionstyle().rad != 0]
    assert len(arcs) == 5 + 3  # the identity skips of five blocks, and the downsample paths of three
    assert sum(abs(a.get_connectionstyle().rad) > 0.5 for a in arcs) == 5  # in line: wide enough to clear the boxes
    assert_legible(fig)


def test_depthwise_kernels_are_drawn_one_per_channel():
    fig = views.first_kernels_figure(torch.randn(48, 1, 3, 3), "block_1_depthwise", depthwise=True)
    assert fig.axes[0].get_title() == ("block_1_depthwise: 48 depthwise kernels, one per channel, of 3x3 "
                                       "(red > 0, blue < 0, one scale)")
    assert [t.get_text() for t in fig.axes[0].texts] == [str(k) for k in range(48)]
    assert_legible(fig)


def test_a_big_layers_maps_stay_a_screen_wide_with_a_pixel_per_map_pixel():
    """64 maps of 112x112 (ResNet50's first conv) were drawn 41 inches wide, a 4,500-pixel PNG taking seconds."""
    from convlens.draw import MOSAIC_INCHES, SAVE_DPI

    fig = views.feature_map_figure(torch.rand(1, 3, 224, 224), torch.rand(1, 64, 112, 112), "conv1", ["#0"])
    mosaic_axes = fig.axes[1]
    width_pixels = mosaic_axes.get_window_extent().width * SAVE_DPI / fig.dpi
    assert mosaic_axes.get_position().width * fig.get_size_inches()[0] <= MOSAIC_INCHES + 0.01
    assert fig.get_size_inches()[0] <= MOSAIC_INCHES + 2 and width_pixels >= 8 * 113  # every map pixel kept
    assert_legible(fig)


def test_save_all_draws_every_other_figure_in_a_second_process_and_writes_what_save_writes(tmp_path):
    """save_all forks a second drawer and encodes PNGs in a writer thread: the files must be save()'s, each
    error must reach the caller as the one line it is, and every figure must be closed."""
    import os

    import numpy as np
    from PIL import Image

    from convlens.storage import WriteError

    maps, images = torch.rand(2, 64, 11, 11, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 28, 28)

    def by_hand(i):
        def make():
            (tmp_path / f"drawn_by_{i}").write_text(str(os.getpid()))
            return views.feature_map_figure(images, maps, "conv2", ["a", "b"])
        return make

    def trimmed():
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    def pixels(name):
        return np.asarray(Image.open(tmp_path / name))

    open_before = set(plt.get_fignums())
    figures.save(by_hand(-1)(), tmp_path / "by_hand.png")
    figures.save(trimmed(), tmp_path / "trimmed.png")
    names = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    makers = [by_hand(0), trimmed, by_hand(2), by_hand(3), trimmed]
    assert figures.save_all(zip(makers, [tmp_path / n for n in names]), "drawing") == [tmp_path / n for n in names]
    for name, reference in zip(names, ["by_hand.png", "trimmed.png", "by_hand.png", "by_hand.png", "trimmed.png"]):
        assert np.array_equal(pixels(name), pixels(reference)), name
    assert (tmp_path / "drawn_by_0").read_text() == str(os.getpid()) != (tmp_path / "drawn_by_3").read_text()
    (tmp_path / "file").write_text("not a folder")
    for failing in (1, 2):  # drawn by the second process, and by this one
        paths = [tmp_path / f"{failing}_{k}.png" for k in range(4)]
        paths[failing] = tmp_path / "file" / f"{failing}.png"
        with pytest.raises(WriteError, match=f"^cannot write {paths[failing]}: "):
            figures.save_all([(by_hand(k), p) for k, p in enumerate(paths)], "drawing")
        assert np.array_equal(pixels(f"{failing}_0.png"), pixels("by_hand.png"))
    assert not list(tmp_path.glob(".*.tmp")) and set(plt.get_fignums()) == open_before  # each figure closed
