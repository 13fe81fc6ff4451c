"""Figures of what a model computes: feature maps, kernels, class patterns, top images, probes.

Every function takes tensors from convlens.inspection and returns a matplotlib Figure. Images are
(H, W) grey or (C, H, W) with one or three channels; `picture` turns either into what imshow takes.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from . import MOSAIC_INCHES, SAVE_DPI

MAX_TICKS = 16  # map numbers per side of a mosaic; a denser axis labels every k-th row or column


def _grid_shape(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def picture(image: torch.Tensor) -> np.ndarray:
    """Return an image (H, W), (1, H, W) or (3, H, W) as imshow takes it: (H, W) grey or (H, W, 3) colour.

    uint8 stays uint8, which imshow reads as 0-255 in colour too.
    """
    image = torch.as_tensor(image)
    if image.dim() == 3:
        image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    return image.numpy() if image.dtype == torch.uint8 else image.float().numpy()


def mosaic(tiles: torch.Tensor, cols: int, pad: int = 1, row_pad: int | None = None
           ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Return tiles (N, h, w) or (N, C, h, w) laid out in a grid as one array, gaps NaN, and each tile's (top, left).

    One imshow of a mosaic replaces hundreds of axes: drawing 128 maps this way takes milliseconds
    instead of seconds. Colour tiles give an (H, W, 3) canvas. `row_pad` (default `pad`) leaves room
    under each row for a caption.
    """
    batch = torch.as_tensor(tiles)
    if batch.dim() == 4:  # (N, 1, h, w) grey or (N, 3, h, w) colour, as picture() reads one
        batch = batch[:, 0] if batch.shape[1] == 1 else batch.permute(0, 2, 3, 1)
    pictures = batch.float().numpy()  # uint8 tiles stay 0-255, which imshow reads as it reads uint8
    n, h, w, colour = *pictures.shape[:3], pictures.shape[3:]
    rows, row_pad = math.ceil(n / cols), pad if row_pad is None else row_pad
    # Every tile in a padded cell of its own, then the cells as rows and columns: one copy instead of one per
    # tile (ResNet50's 2,048-map layers copied 2,048 strided tiles one by one).
    cells = np.full((rows * cols, h + row_pad, w + pad, *colour), np.nan, dtype=np.float32)
    cells[:n, :h, :w] = pictures
    canvas = cells.reshape(rows, cols, h + row_pad, w + pad, *colour).swapaxes(1, 2).reshape(
        rows * (h + row_pad), cols * (w + pad), *colour)[: rows * (h + row_pad) - row_pad, : cols * (w + pad) - pad]
    corners = [((i // cols) * (h + row_pad), (i % cols) * (w + pad)) for i in range(n)]
    return canvas, corners


def _show_mosaic(ax, canvas, cmap, vmin=None, vmax=None) -> ScalarMappable:
    """Show a mosaic as RGBA pixels, gaps white; return the colour scale it was drawn in, for a colour bar.

    Grey mosaics are coloured here through a 256-entry table: imshow colouring a float canvas spent
    a third of every big layer's drawing time (ResNet50's maps) re-normalising it in float64.
    """
    lo = np.nanmin(canvas) if vmin is None else vmin
    hi = np.nanmax(canvas) if vmax is None else vmax
    scaled = np.nan_to_num((canvas - lo) / max(hi - lo, 1e-12), nan=1.0).clip(0, 1)
    if canvas.ndim == 3:  # colour: scaled into [0, 1] by hand, gaps white
        rgba = (scaled * 255).astype(np.uint8)
    else:
        table = (plt.get_cmap(cmap)(np.linspace(0, 1, 256)) * 255).astype(np.uint8)
        rgba = table[(scaled * 255).astype(np.uint8)]
        rgba[np.isnan(canvas)] = 255
    ax.imshow(rgba, interpolation="nearest")
    _off(ax)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ScalarMappable(Normalize(lo, hi), cmap)


def number_tiles(ax, n: int, cols: int, height: int, width: int, pad: int = 1) -> None:
    """Number a mosaic's tiles from outside them: each row starts at the number on its left, each column
    adds the number above it (map 74 of 12 a row: row 72, column 2). Labels never cover a map, and cost a
    text per row and column, not per tile: ResNet50's 2,048-map layers drew 2,048 texts, 1.5 s each layer.
    Plain texts, not ticks: 54 layers' tick objects took 4.7 s to make."""
    rows = math.ceil(n / cols)
    row_step, col_step = math.ceil(rows / MAX_TICKS), math.ceil(cols / MAX_TICKS)
    left_of = blended_transform_factory(ax.transAxes, ax.transData)  # x in the axes, y in mosaic pixels
    above = blended_transform_factory(ax.transData, ax.transAxes)
    for r in range(0, rows, row_step):
        ax.text(-0.01, r * (height + pad) + (height - 1) / 2, str(r * cols), transform=left_of, fontsize=6,
                ha="right", va="center")
    for c in range(0, cols, col_step):
        ax.text(c * (width + pad) + (width - 1) / 2, 1.01, f"+{c}", transform=above, fontsize=6, ha="center",
                va="bottom")


def frame_tiles(ax, corners: list[tuple[int, int]], height: int, width: int) -> None:
    """Draw a thin grey frame around each tile of a mosaic: a white tile (a blank crop, a flat OIP) on the
    white page would otherwise have no edge."""
    for top, left in corners:
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, lw=0.5, ec="0.55", clip_on=False))


def _stretch(maps: torch.Tensor) -> torch.Tensor:
    """Return each map (C, H, W) scaled to [0, 1] on its own; a constant map becomes 0."""
    lo = maps.amin((1, 2), keepdim=True)
    span = maps.amax((1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp(min=1e-12), torch.zeros_like(maps))


def feature_map_figure(images: torch.Tensor, maps: torch.Tensor, layer: str, titles: list[str],
                       cmap: str = "gray", scale: str = "layer") -> Figure:
    """Return one layer's maps for several images side by side: images (B, [C,] H, W), maps (B, C, H, W).

    scale 'layer' gives all maps of the layer, across images too, one colour range, so strengths
    compare; 'map' stretches each map, so weak patterns show. A colour bar says which.

    Laid out by hand, in inches, rather than by tight_layout: `maps` draws one of these per layer,
    and for ResNet50's 54 layers tight_layout's text measuring alone cost 5 s.
    """
    b, c, h, w = maps.shape
    rows, cols = _grid_shape(c)
    # About 5 screen pixels per map pixel for small maps; a big layer's mosaic (64 maps of 112x112) stays
    # within MOSAIC_INCHES at one pixel per map pixel or more: 40-inch PNGs took seconds each to encode.
    pixel = max(min(0.045, MOSAIC_INCHES / (cols * (w + 1))), 1 / SAVE_DPI)
    width = max(2.6, cols * (w + 1) * pixel)  # of one mosaic
    height = width * (rows * (h + 1)) / (cols * (w + 1))
    left, gap, right, bar = 0.5, 0.55, 1.0, 0.14  # row numbers; between mosaics; the colour bar and its label
    picture_h, top, ticks = min(2.0, max(1.0, width * 0.3)), 0.75, 0.22  # image; suptitle and title; column numbers
    fig_w, fig_h = left + b * width + (b - 1) * gap + right, top + picture_h + ticks + height + 0.15
    fig = plt.figure(figsize=(fig_w, fig_h))

    def box(x, y, w_, h_):  # inches from the bottom left -> figure fractions
        return fig.add_axes((x / fig_w, y / fig_h, w_ / fig_w, h_ / fig_h))

    vmin, vmax = map(float, torch.aminmax(maps)) if scale == "layer" else (0.0, 1.0)
    for j in range(b):
        x = left + j * (width + gap)
        ax = box(x, 0.15 + height + ticks, width, picture_h)
        ax.imshow(picture(images[j]), cmap="gray_r")
        _off(ax)
        ax.set_title(titles[j], fontsize=9)
        tiles = box(x, 0.15, width, height)
        colours = _show_mosaic(tiles, mosaic(maps[j] if scale == "layer" else _stretch(maps[j]), cols)[0], cmap, vmin,
                               vmax if vmax > vmin else None)
        number_tiles(tiles, c, cols, h, w)
        tiles.set_axis_off()  # no axis to draw: its tick machinery was a seventh of each big figure's drawing
    colour_bar = fig.colorbar(colours, cax=box(fig_w - right + 0.12, 0.15, bar, height))
    colour_bar.set_label(f"{layer} activation" if scale == "layer" else "each map from its min to its max", fontsize=8)
    colour_bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{layer}: {c} maps of {h}x{w} (colour scale: per {scale}; map number = row's + column's)",
                 fontsize=11, y=1 - 0.12 / fig_h, va="top")
    return fig


def _framed(ax):
    """No ticks, a thin grey frame: tiles stay apart even when a map is as dark as the page is light."""
    _off(ax)
    for spine in ax.spines.values():
        spine.set_color("0.55")
        spine.set_linewidth(0.6)


def maps_across_figure(images: torch.Tensor, maps: torch.Tensor, layer: str, chosen: list[int], titles: list[str],
                       cmap: str = "gray", scale: str = "layer", effect: list[float] | None = None,
                       difference: tuple[torch.Tensor, str] | None = None) -> Figure:
    """Return chosen maps across images: images on top, one row per map (B, M, h, w), one column per image.

    scale 'layer': one colour range for every tile, one colour bar; 'map': one range per row, so
    the images compare within a map, with a colour bar per row. `effect` adds each map's Cohen's d
    to its row label; `difference` (M, h, w) adds a column of mean-difference maps in red and blue.
    """
    b, m, h, w = maps.shape
    cols = b + (difference is not None)
    height = 1.1 + 1.15 * (m + 1.3)
    fig = plt.figure(figsize=(1.5 + 1.15 * cols + 0.7, height))
    grid = fig.add_gridspec(m + 1, cols + 1, width_ratios=[1] * cols + [0.09], height_ratios=[1.3] + [1] * m,
                            wspace=0.1, hspace=0.14, top=1 - 0.75 / height, bottom=0.2 / height)
    for j in range(b):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(picture(images[j]), cmap="gray_r")
        _framed(ax)
        ax.set_title(titles[j], fontsize=8)
    lo, hi = maps.min().item(), maps.max().item()
    for r in range(m):
        if scale == "map":
            lo, hi = maps[:, r].min().item(), maps[:, r].max().item()
        for j in range(b):
            ax = fig.add_subplot(grid[r + 1, j])
            im = ax.imshow(maps[j, r].numpy(), cmap=cmap, vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest")
            _framed(ax)
            if j == 0:
                label = f"map {chosen[r]}" + (f"\nd = {effect[r]:+.2f}" if effect else "")
                ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
        if scale == "map":
            bar = fig.colorbar(im, cax=fig.add_subplot(grid[r + 1, -1]))
            bar.ax.tick_params(labelsize=7)
        if difference is not None:
            diff = difference[0][r].numpy()
            limit = max(float(np.abs(diff).max()), 1e-6)
            ax = fig.add_subplot(grid[r + 1, b])
            ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            _framed(ax)
            ax.text(0.03, 0.97, f"±{limit:.2g}", transform=ax.transAxes, fontsize=7, va="top", ha="left",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if difference is not None:
        head = fig.add_subplot(grid[0, b])
        head.axis("off")
        head.text(0.5, 0.5, f"{difference[1]}\n(range per row)", fontsize=8, ha="center", va="center",
                  transform=head.transAxes)
    if scale == "layer":
        bar = fig.colorbar(im, cax=fig.add_subplot(grid[1:, -1]))
        bar.set_label(f"{layer} activation (one range for every tile)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    what = "the maps that differ most between two classes" if effect else "chosen maps"
    fig.suptitle(f"{layer}: {what}, {m} of them, across {b} images (colour range: per {scale})", fontsize=11)
    return fig


def first_kernels_figure(weight: torch.Tensor, layer: str, depthwise: bool = False) -> Figure:
    """Return every kernel of a conv layer on the image (or of a depthwise conv, one per channel) as a small
    picture: grey kernels red positive, blue negative; colour kernels in colour, grey meaning zero."""
    o, c, kh, kw = weight.shape
    rows, cols = _grid_shape(o)
    canvas, corners = mosaic(weight, cols)
    fig, ax = plt.subplots(figsize=(cols * 0.9, rows * 0.95 + 0.6))
    lim = weight.abs().max().item()
    im = _show_mosaic(ax, canvas, "RdBu_r", -lim, lim)
    for i, (top, left) in enumerate(corners):
        ax.text(left - 0.45, top - 0.45, str(i), fontsize=7, va="top")
    what = "red > 0, blue < 0" if c == 1 else "RGB, grey = 0"
    kind = "depthwise kernels, one per channel," if depthwise else "kernels"
    ax.set_title(f"{layer}: {o} {kind} of {kh}x{kw} ({what}, one scale)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def deep_kernels_figure(weight: torch.Tensor, norms: torch.Tensor, layer: str, outputs: int = 8, inputs: int = 32) -> Figure:
    """Return a deep conv layer's kernel norms (out x in) and the slices of its strongest output maps."""
    o, i = norms.shape
    show_out = torch.argsort(norms.sum(1), descending=True)[: min(outputs, o)]
    show_in = min(inputs, i)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(max(9, show_in * 0.3), 9), height_ratios=[3, 1.4])
    im = ax.imshow(norms.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
    ax.set(xlabel="input map", ylabel="output map", title=f"{layer}: L2 norm of each kernel slice (how much an input map feeds an output map)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    slices = weight[show_out][:, :show_in]  # (outputs, inputs, kh, kw)
    canvas, corners = mosaic(slices.reshape(-1, *slices.shape[2:]), show_in)
    lim = slices.abs().max().item()
    _show_mosaic(ax2, canvas, "RdBu_r", -lim, lim)
    kh = slices.shape[2]
    ax2.set_yticks([r * (kh + 1) + kh / 2 - 0.5 for r in range(len(show_out))], [str(m) for m in show_out.tolist()], fontsize=7)
    ax2.set(ylabel="output map", title=f"kernel slices of the {len(show_out)} strongest output maps, input maps 0-{show_in - 1} left to right")
    fig.tight_layout()
    return fig


def class_activation_figure(mean_activation: torch.Tensor, fire_rate: torch.Tensor, class_names, layer: str) -> Figure:
    """Return the class-mean activation of every map (classes x maps), with never-firing maps marked."""
    k, c = mean_activation.shape
    fig, ax = plt.subplots(figsize=(max(8, c * 0.09), 0.45 * k + 1.8))
    im = ax.imshow(mean_activation.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    dead_k, dead_c = torch.nonzero(fire_rate == 0, as_tuple=True)
    ax.scatter(dead_c.numpy(), dead_k.numpy(), marker="x", color="red", s=12, label="never fires for this class")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("map")
    ax.set_title(f"{layer}: mean activation of each map per class", loc="left")
    if len(dead_k):  # above the data, beside the title, never over a cell
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), fontsize=8, frameon=False)
    fig.colorbar(im, ax=ax, fraction=0.03, label="mean activation")
    fig.tight_layout()
    return fig


def separation_figure(d: torch.Tensor, mean_maps: torch.Tensor, a: int, b: int, class_names, layer: str, show: int = 8) -> Figure:
    """Return the maps ranked by effect size between two classes, with their class-mean maps side by side."""
    order = torch.argsort(d.abs(), descending=True)[:show]
    fig = plt.figure(figsize=(max(10, show * 1.3), 6.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.2, 1.6])
    ax = top.subplots()
    ranked = torch.argsort(d.abs(), descending=True)
    ax.bar(range(len(d)), d[ranked].numpy(), color=["tab:blue" if v > 0 else "tab:orange" for v in d[ranked]])
    ax.set(xlabel="maps, ranked by |effect size|", ylabel="Cohen's d",
           title=f"{layer}: how well each map separates {class_names[a]} (d > 0) from {class_names[b]} (d < 0)")
    axes = bottom.subplots(2, len(order), squeeze=False)
    for j, m in enumerate(order.tolist()):
        pair = mean_maps[[a, b], m]
        for r in range(2):
            _off(axes[r, j])
            axes[r, j].imshow(pair[r].numpy(), cmap="viridis", vmin=pair.min().item(), vmax=pair.max().item())
        axes[0, j].set_title(f"map {m}\nd={d[m]:.2f}", fontsize=8)
    axes[0, 0].set_ylabel(f"mean {class_names[a]}")
    axes[1, 0].set_ylabel(f"mean {class_names[b]}")
    return fig


def top_figure(images_u8: torch.Tensor, top, field, maps: list[int], layer: str) -> Figure:
    """Return, for each map, its top images as receptive-field crops and as whole images with the field outlined,
    each whole image captioned with its test index and the map's activation there."""
    k = top.indices.shape[1]
    channels, height, width = (1, *images_u8.shape[1:]) if images_u8.dim() == 3 else images_u8.shape[1:]
    side = min(field.size, height)
    crops = torch.full((len(maps) * k, channels, side, side), float("nan"))
    wholes = torch.zeros(len(maps) * k, channels, height, width)
    boxes = []
    for r, m in enumerate(maps):
        for j in range(k):
            wholes[r * k + j], box = _field_crop(images_u8, top, field, m, j, crops[r * k + j])
            boxes.append(box)
    caption = max(3, round(height * 0.45))  # room under each whole image for "#index value"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(k * 1.9, len(maps) * 1.3 + 0.8))
    crop_canvas, crop_corners = mosaic(crops, k, pad=3)
    whole_canvas, whole_corners = mosaic(wholes, k, pad=3, row_pad=caption)
    _show_mosaic(ax1, crop_canvas, "gray_r", 0, 255)
    _show_mosaic(ax2, whole_canvas, "gray_r", 0, 255)
    frame_tiles(ax1, crop_corners, side, side)
    frame_tiles(ax2, whole_corners, height, width)
    for (top_, left), (t, l, bt, rt) in zip(whole_corners, boxes):  # not clipped: a field at the border shows whole
        ax2.add_patch(Rectangle((left + l - 0.5, top_ + t - 0.5), rt - l, bt - t, fill=False, color="red", lw=0.8,
                                clip_on=False))
    for i, (top_, left) in enumerate(whole_corners):
        m, j = maps[i // k], i % k
        ax2.text(left + width / 2 - 0.5, top_ + height + 0.5, f"#{top.indices[m, j].item()} {top.values[m, j]:.3g}",
                 ha="center", va="top", fontsize=6)
    ticks = [r * (side + 3) + side / 2 for r in range(len(maps))]
    ax1.set_yticks(ticks, [f"map {m}" for m in maps], fontsize=8)
    ax2.set_yticks([r * (height + caption) + height / 2 for r in range(len(maps))], [f"map {m}" for m in maps],
                   fontsize=8)
    ax1.set_title(f"receptive-field crops ({field.size}x{field.size}) at each map's peak", fontsize=9)
    ax2.set_title("whole images, field outlined", fontsize=9)
    fig.suptitle(f"{layer}: the top {k} test images per map, strongest first; under each image: its test index "
                 "and the map's activation", fontsize=10)
    fig.tight_layout()
    return fig


def _field_crop(images_u8: torch.Tensor, top, field, m: int, j: int, crop: torch.Tensor):
    """Copy map m's j-th top image, cut to the receptive field at its peak, into `crop` (C, side, side; NaN where
    the field leaves the image); return the whole image (C, H, W) and the field's box in it."""
    channels, height, width = crop.shape[0], *images_u8.shape[-2:]
    image = images_u8[top.indices[m, j]].float().reshape(channels, height, width)
    t, l, b, r = field.box(*top.positions[m, j].tolist(), height)
    crop[:, : b - t, : r - l] = image[:, t:b, l:r]
    return image, (t, l, b, r)


def top_overview_figure(images_u8: torch.Tensor, top, field, layer: str) -> Figure:
    """Return every map's strongest receptive-field crop in one numbered mosaic: the index to a layer's top pages."""
    channels, height, width = (1, *images_u8.shape[1:]) if images_u8.dim() == 3 else images_u8.shape[1:]
    side, n = min(field.size, height), top.indices.shape[0]
    crops = torch.full((n, channels, side, side), float("nan"))
    for m in range(n):
        _field_crop(images_u8, top, field, m, 0, crops[m])
    cols = min(n, 16)
    rows = math.ceil(n / cols)
    fig, ax = plt.subplots(figsize=(min(MOSAIC_INCHES, 1.5 + cols * 0.6), min(MOSAIC_INCHES, 1.2 + rows * 0.6)))
    canvas, corners = mosaic(crops, cols, pad=2)
    _show_mosaic(ax, canvas, "gray_r", 0, 255)
    frame_tiles(ax, corners, side, side)
    number_tiles(ax, n, cols, side, side, pad=2)
    ax.set_title(f"{layer}: each map's strongest test image, cropped to its {field.size}x{field.size} field "
                 f"(map = row + column)", fontsize=9)
    fig.tight_layout()
    return fig


def probe_figure(result: dict[str, dict], model_accuracy: float | None) -> Figure:
    """Return linear-probe and nearest-centroid accuracy per layer."""
    layers = list(result)
    fig, ax = plt.subplots(figsize=(max(6, len(layers) * 0.9), 4))
    x = np.arange(len(layers))
    ax.plot(x, [result[n]["linear"] for n in layers], "o-", label="linear probe")
    ax.plot(x, [result[n]["centroid"] for n in layers], "s-", label="nearest centroid")
    if model_accuracy is not None:
        ax.axhline(model_accuracy, ls="--", color="gray", label=f"model ({model_accuracy:.4f})")
    ax.set_xticks(x, [f"{n}\n{result[n]['features']}" for n in layers], fontsize=8)
    ax.set(ylabel="test accuracy", title="where can the class be read off? (layer, features)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def filters_demo_figure(image: torch.Tensor, classic_names, classic_w, classic_out, learned_w, learned_out) -> Figure:
    """Return classic hand-set kernels and learned conv1 kernels, each beside its output on the same image.

    Each section's heading has a row of its own: drawn above the first kernel row, it ran into the
    kernels' labels.
    """
    sections = [("classic filters", list(classic_names), classic_w, classic_out),
                ("learned conv1 kernels (before bias and ReLU)", [str(i) for i in range(len(learned_w))], learned_w,
                 learned_out)]
    cols = 8
    layout = []  # per grid row: ("head", title) or ("kernels" / "outputs", section, first kernel)
    for title, names, w, out in sections:
        layout.append(("head", title))
        for start in range(0, len(w), cols):
            layout += [("kernels", (names, w, out), start), ("outputs", (names, w, out), start)]
    heights = [0.3 if row[0] == "head" else 1 for row in layout]
    fig = plt.figure(figsize=((cols + 1) * 1.05, sum(heights) * 1.15))
    grid = fig.add_gridspec(len(layout), cols + 1, height_ratios=heights, hspace=0.5, wspace=0.15)
    ax = fig.add_subplot(grid[1, 0])
    ax.imshow(picture(image), cmap="gray_r")
    ax.set_title("input", fontsize=8)
    _off(ax)
    for r, row in enumerate(layout):
        if row[0] == "head":
            head = fig.add_subplot(grid[r, 1:])
            head.axis("off")
            head.text(0, 0, row[1], fontsize=10, weight="bold", va="bottom", transform=head.transAxes)
            continue
        kind, (names, w, out), start = row
        for j, i in enumerate(range(start, min(start + cols, len(w)))):
            ax = fig.add_subplot(grid[r, j + 1])
            _off(ax)
            if kind == "kernels":
                lim = w[i].abs().max().item() or 1
                ax.imshow(w[i, 0].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_title(names[i], fontsize=7)
            else:
                ax.imshow(out[i].numpy(), cmap="gray")
    return fig
