"""Figures of a run comparison: matched conv1 kernels, matched OIPs, the CKA heat map, matched correlations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..compare.runs_compare import PARTNER_R

from .inspect_figures import _off, picture


def kernel_pairs_figure(wa: torch.Tensor, wb: torch.Tensor, matched: torch.Tensor, cosine: torch.Tensor,
                        names: tuple[str, str]) -> Figure:
    """Return each conv1 kernel of A above its match in B (red positive, blue negative), best matches first."""
    order = torch.argsort(cosine, descending=True)
    n = len(order)
    fig, axes = plt.subplots(2, n, figsize=(n * 0.55 + 1.0, 1.9), squeeze=False)
    lim = max(wa.abs().max().item(), wb.abs().max().item())
    for col, i in enumerate(order.tolist()):
        for row, (w, k) in enumerate(((wa, i), (wb, matched[i].item()))):
            axes[row, col].imshow(w[k, 0].numpy(), cmap="bwr", vmin=-lim, vmax=lim)
            _off(axes[row, col])
            axes[row, col].set_title(str(k), fontsize=5, pad=1)
        axes[1, col].set_xlabel(f"{cosine[i]:.2f}", fontsize=5)
    axes[0, 0].set_ylabel(names[0], fontsize=6)
    axes[1, 0].set_ylabel(names[1], fontsize=6)
    fig.suptitle("conv1 kernels matched by signed cosine (under each pair); a kernel and its negative are different filters",
                 fontsize=8)
    fig.tight_layout()
    return fig


def oip_pairs_figure(oa: torch.Tensor, ob: torch.Tensor, matched: torch.Tensor, corr: torch.Tensor, layer: str,
                     names: tuple[str, str], show: int = 16) -> Figure:
    """Return the OIPs (M, C, H, W) of A's maps above those of their matches in B, most similar maps first."""
    order = torch.argsort(corr, descending=True)[:show]
    fig, axes = plt.subplots(2, len(order), figsize=(len(order) * 0.75 + 1.0, 2.2), squeeze=False)
    for col, i in enumerate(order.tolist()):
        for row, (o, k) in enumerate(((oa, i), (ob, matched[i].item()))):
            axes[row, col].imshow(picture(o[k]), cmap="gray", vmin=0, vmax=1)
            _off(axes[row, col])
            axes[row, col].set_title(str(k), fontsize=6, pad=1)
        axes[1, col].set_xlabel(f"r={corr[i]:.2f}", fontsize=6)
    axes[0, 0].set_ylabel(names[0], fontsize=6)
    axes[1, 0].set_ylabel(names[1], fontsize=6)
    fig.suptitle(f"{layer}: OIPs of matched maps (r: activation correlation of the pair)", fontsize=8)
    fig.tight_layout()
    return fig


def cka_figure(cka: torch.Tensor, layers: list[str], names: tuple[str, str]) -> Figure:
    """Return the linear CKA between every layer of A (rows) and of B (columns) as an annotated heat map."""
    fig, ax = plt.subplots(figsize=(0.7 * len(layers) + 2.2, 0.6 * len(layers) + 1.6))
    im = ax.imshow(cka.numpy(), cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    for i in range(len(layers)):
        for j in range(len(layers)):
            v = cka[i, j].item()
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > 0.6 else "white")
    ax.set(xlabel=names[1], ylabel=names[0], title="linear CKA (1 = same representation up to rotation and scale)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def matched_correlation_figure(per_layer: dict[str, torch.Tensor], baselines: dict[str, dict[str, torch.Tensor]]) -> Figure:
    """Return a histogram per conv layer of the live maps' matched correlations, with the untrained baseline's in grey.

    The title's mean and share are the numbers compare prints and writes (over live maps, r >= PARTNER_R).
    """
    fig, axes = plt.subplots(1, len(per_layer), figsize=(3.4 * len(per_layer), 2.8), squeeze=False)
    bins = torch.linspace(-0.2, 1.0, 25).numpy()
    for ax, (layer, corr) in zip(axes[0], per_layer.items()):
        untrained = baselines.get("untrained", {}).get(layer)
        if untrained is not None:
            ax.hist(untrained.numpy(), bins=bins, color="0.75", label="vs untrained")
        ax.hist(corr.numpy(), bins=bins, color="tab:blue", alpha=0.8, label="run vs run")
        ax.axvline(PARTNER_R, color="k", lw=0.6, ls="--", label=f"partner: r ≥ {PARTNER_R}")
        share = (corr >= PARTNER_R).float().mean()
        ax.set(title=f"{layer}: mean r {corr.mean():.2f}, {share:.0%} with a partner",
               xlabel="matched correlation (live maps)", ylabel="maps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
