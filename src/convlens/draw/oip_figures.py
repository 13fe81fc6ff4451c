"""Figures of OIPs: a layer's gallery in map order, and the K starts of each map side by side."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from .inspect_figures import _off, _show_mosaic, frame_tiles, mosaic, picture


def oip_gallery_figure(oips, best_test: torch.Tensor | None = None, labels: list[str] | None = None,
                       cols: int = 16, field: tuple[int, int, int, int] | None = None,
                       best_images: torch.Tensor | None = None,
                       classified: list[str] | None = None) -> Figure:
    """Return every map's strongest OIP in index order, each tile annotated with the activation it reached.

    With best_test, the annotation is the ratio to the best test image too; a red label marks a map
    that no real digit is beaten on, and a '-' one that never fired. `field`, the centre unit's receptive
    field (top, left, bottom, right) where smaller than the image, crops each OIP to it, zoomed to the
    tile: a 3x3 field's wish is nine pixels, not a 28x28 wallpaper of it. `best_images` (M, C, H, W), the
    test image each map likes best, goes right of its OIP; `classified` names what the model calls each
    class OIP.
    """
    best = oips.best
    side = best.shape[-2]
    shown, cropped = best, field is not None and field[2] - field[0] < side
    if cropped:
        shown = F.interpolate(best[..., field[0] : field[2], field[1] : field[3]], size=best.shape[-2:],
                              mode="nearest")
    if best_images is not None:  # each tile is the OIP and, one pixel apart, the best real image
        gap = torch.full((*best.shape[:-1], 1), float("nan"))
        shown = torch.cat([shown, gap, best_images.to(shown.dtype)], -1)
    n = len(oips.index)
    cols = min(cols, n) if best_images is None else min(cols // 2, n)
    canvas, corners = mosaic(shown, cols, pad=9)  # pad leaves room for the annotation under each tile
    width = cols * (0.95 if best_images is None else 1.9) + 0.4
    fig, ax = plt.subplots(figsize=(width, width * canvas.shape[0] / canvas.shape[1] + 0.8))
    _show_mosaic(ax, canvas, "gray", 0.0, 1.0)
    reached = oips.reached
    for i, (top, left) in enumerate(corners):
        name = labels[i] if labels else str(oips.index[i])
        text = f"{name}: {reached[i]:.2g}"
        color = "black"
        if best_test is not None and best_test[i] > 0:
            ratio = reached[i] / best_test[i]
            text += f" ({ratio:.1f}x)"
            color = "black" if ratio >= 1 else "red"
        elif best_test is not None:  # no ratio to give: no test image makes this map fire
            text += " (0 on test)"
        if classified is not None:
            text += f", seen as {classified[i]}"
            color = "black" if classified[i] == name else "red"
        if reached[i] <= 0:
            text, color = f"{name}: -", "red"
        ax.text(left + shown.shape[-1] / 2, top + shown.shape[-2] + 0.5, text, fontsize=6, ha="center", va="top",
                color=color)
    frame_tiles(ax, corners, shown.shape[-2], shown.shape[-1])
    what = "class logit" if oips.layer == "logits" else f"{oips.objective} activation"
    extra = " (x: ratio to the best of the test images)" if best_test is not None else ""
    lines = [f"OIPs of {oips.layer}: {n} inputs found by gradient ascent; label: index: {what}{extra}"]
    if cropped:
        lines.append(f"each OIP cropped to the centre unit's {field[2] - field[0]}x{field[3] - field[1]} receptive "
                     "field, zoomed")
    if best_images is not None:
        lines.append("right of each: the test image that drives it hardest")
    fig.suptitle("\n".join(lines), fontsize=10)
    fig.tight_layout()
    return fig


def oip_starts_figure(oips, show: int = 16) -> Figure:
    """Return the K OIPs of the first `show` maps, one row per map, with their mean pairwise correlation."""
    m, k = oips.images.shape[:2]
    show = min(show, m)
    similarity = oips.similarity()
    fig, axes = plt.subplots(show, k, figsize=(k * 0.9 + 1.6, show * 0.9 + 0.6), squeeze=False)
    for i in range(show):
        for j in range(k):
            axes[i, j].imshow(picture(oips.images[i, j]), cmap="gray", vmin=0, vmax=1)
            _off(axes[i, j])
        axes[i, 0].set_ylabel(f"{oips.index[i]}\nr={similarity[i]:.2f}", fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{oips.layer}: {k} starts per map (r: mean correlation between them; 1 = one favourite pattern)",
                 fontsize=9)
    fig.tight_layout()
    return fig
