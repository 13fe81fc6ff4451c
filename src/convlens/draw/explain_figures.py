"""Figures of attributions: one image explained by several methods, a page per confused pair, the sanity check."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .inspect_figures import _off

TITLES = {"saliency": "saliency (gradient)", "ig": "integrated gradients", "gradcam": "Grad-CAM",
          "occlusion": "occlusion", "guided-backprop": "guided backprop"}


def heat(ax, image: torch.Tensor, attribution: torch.Tensor, title: str) -> None:
    """Draw a signed attribution (red: towards the class, blue: against) with the digit's outline on top."""
    limit = attribution.abs().max().item() or 1.0
    ax.imshow(attribution.numpy(), cmap="bwr", vmin=-limit, vmax=limit)
    ax.contour(image.numpy(), levels=[0.5], colors="k", linewidths=0.6)
    ax.set_title(title, fontsize=8)
    _off(ax)


def explain_figure(image: torch.Tensor, rows: dict[str, dict[str, torch.Tensor]], probabilities: torch.Tensor,
                   class_names, label: int, notes: dict[str, str]) -> Figure:
    """Return the image, one heat map per method and class (rows: classes), and the class probabilities."""
    methods = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(methods) + 2, figsize=(2.0 * (len(methods) + 2), 2.1 * len(rows) + 0.3),
                             squeeze=False)
    for r, (cls, maps) in enumerate(rows.items()):
        axes[r, 0].imshow(image.numpy(), cmap="gray_r")
        axes[r, 0].set_title(f"true {class_names[label]}; towards {cls}", fontsize=8)
        _off(axes[r, 0])
        for c, method in enumerate(methods):
            extra = f"\n{notes[method]}" if notes.get(method) else ""
            heat(axes[r, c + 1], image, maps[method], TITLES[method] + extra)
        ax = axes[r, -1]
        if r == 0:
            ax.barh(range(len(class_names)), probabilities.numpy(), color="tab:blue")
            ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_title("probabilities", fontsize=8)
        else:
            ax.axis("off")
    fig.tight_layout()
    signed_scale_bar(fig, axes[:, 1:-1].ravel().tolist())
    return fig


def signed_scale_bar(fig, axes) -> None:
    """Add the colour scale of the heat maps: each is scaled to its own largest magnitude."""
    bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), "bwr"), ax=axes, orientation="horizontal", fraction=0.04,
                       pad=0.02, aspect=40)
    bar.set_ticks([-1, 0, 1], labels=["against (−max)", "0", "towards (+max)"])
    bar.ax.tick_params(labelsize=8)
    bar.set_label("each map in its own range: ±its largest magnitude", fontsize=8)


def error_pair_figure(images: torch.Tensor, towards_pred: torch.Tensor, towards_true: torch.Tensor, indices: list[int],
                      true_name: str, pred_name: str, method: str) -> Figure:
    """Return, for every image of one (true, predicted) pair, the image and the evidence for each class."""
    n = len(indices)
    fig, axes = plt.subplots(n, 3, figsize=(5.4, 1.8 * n + 0.5), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].numpy(), cmap="gray_r")
        axes[i, 0].set_title(f"#{indices[i]}", fontsize=8)
        _off(axes[i, 0])
        heat(axes[i, 1], images[i], towards_pred[i], f"towards {pred_name} (said)")
        heat(axes[i, 2], images[i], towards_true[i], f"towards {true_name} (true)")
    fig.suptitle(f"{true_name} taken for {pred_name}: {n} image(s), {TITLES[method]}", fontsize=9)
    fig.tight_layout()
    signed_scale_bar(fig, axes[:, 1:].ravel().tolist())
    return fig


def sanity_figure(image: torch.Tensor, result: dict) -> Figure:
    """Return each method's map (rows) for the original model and after each randomisation stage (columns)."""
    methods, layers = list(result["methods"]), result["layers"]
    fig, axes = plt.subplots(len(methods), len(layers) + 1, figsize=(1.7 * (len(layers) + 1), 1.8 * len(methods) + 0.6),
                             squeeze=False)
    for r, m in enumerate(methods):
        for c, maps in enumerate(result["maps"][m]):
            axes[r, c].imshow(maps[0].numpy(), cmap="hot")
            _off(axes[r, c])
            if not maps[0].abs().max() > 0:  # a black panel is a zero map, not a failure to draw
                axes[r, c].text(0.5, 0.5, "all zero", color="white", fontsize=8, ha="center", va="center",
                                transform=axes[r, c].transAxes)
            title = (f"{TITLES[m]}, trained:\n{result['verdicts'][m].split(':')[0]}" if c == 0
                     else f"to {layers[c - 1]}\nrho={result['methods'][m][c - 1]:.2f}")
            axes[r, c].set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(TITLES[m], fontsize=7)
    fig.suptitle("sanity check: |map| as layers are randomised from the top (rho: rank correlation with trained)",
                 fontsize=8)
    fig.tight_layout()
    return fig
