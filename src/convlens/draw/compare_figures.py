"""Figures of a run comparison: matched conv1 kernels, matched OIPs, the CKA heat map, matched correlations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..compare.runs_compare import PARTNER_R
from .inspect_figures import _off, picture


PAIRS_PER_ROW = 8  # a long strip of 32 pairs at 5-pt type was 2,035 px wide and unreadable


def _pairs_figure(pairs: list[tuple[int, int, str]], draw, names: tuple[str, str], title: str,
                  colours: tuple[ScalarMappable, str] | None = None) -> Figure:
    """Lay out matched pairs (index in A, index in B, caption), A above B, PAIRS_PER_ROW to a row.

    draw(ax, run, index) draws one tile (run 0 is A, 1 is B) and may return a note put on it;
    `colours`, the tiles' colour scale and its label, adds a colour bar at the right.
    """
    rows = -(-len(pairs) // PAIRS_PER_ROW)
    cols = min(len(pairs), PAIRS_PER_ROW)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 1.05 + 1.0, rows * 2.5 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, (a, b, caption) in enumerate(pairs):
        r, c = 2 * (n // PAIRS_PER_ROW), n % PAIRS_PER_ROW
        for run, (ax, index) in enumerate(((axes[r, c], a), (axes[r + 1, c], b))):
            ax.axis("on")
            _off(ax)
            if note := draw(ax, run, index):
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6"})
            ax.set_title(f"{'AB'[run]} {index}", fontsize=7, pad=2)
        axes[r + 1, c].set_xlabel(caption, fontsize=8)
    fig.suptitle(f"{title}\nA (upper of each pair): {names[0]}; B (lower): {names[1]}", fontsize=9)
    fig.tight_layout()
    if colours:
        width = fig.get_size_inches()[0]
        fig.subplots_adjust(right=1 - 0.9 / width)
        bar = fig.colorbar(colours[0], cax=fig.add_axes((1 - 0.65 / width, 0.15, 0.12 / width, 0.6)))
        bar.set_label(colours[1], fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig


def kernel_pairs_figure(wa: torch.Tensor, wb: torch.Tensor, matched: torch.Tensor, cosine: torch.Tensor,
                        names: tuple[str, str]) -> Figure:
    """Return each conv1 kernel of A above its match in B (red positive, blue negative), best matches first."""
    order = torch.argsort(cosine, descending=True).tolist()
    lim = max(wa.abs().max().item(), wb.abs().max().item())

    def draw(ax, run, index):
        ax.imshow((wa, wb)[run][index, 0].numpy(), cmap="bwr", vmin=-lim, vmax=lim)

    pairs = [(i, matched[i].item(), f"cos {cosine[i]:.2f}") for i in order]
    return _pairs_figure(pairs, draw, names, "conv1 kernels matched by signed cosine, best first; a kernel and its "
                                             "negative are different filters",
                         (ScalarMappable(Normalize(-lim, lim), "bwr"), "kernel weight"))


def oip_pairs_figure(oa: torch.Tensor, ob: torch.Tensor, matched: torch.Tensor, corr: torch.Tensor, layer: str,
                     names: tuple[str, str], show: int = 16) -> Figure:
    """Return the OIPs (M, C, H, W) of A's maps above those of their matches in B, most similar maps first.

    A flat OIP (one grey level) means the search never made its map fire: it is labelled, not left
    as an empty square.
    """
    order = torch.argsort(corr, descending=True)[:show].tolist()

    def draw(ax, run, index):
        oip = (oa, ob)[run][index]
        ax.imshow(picture(oip), cmap="gray", vmin=0, vmax=1)
        return "flat: the map\nnever fired" if oip.max() - oip.min() < 1e-3 else None

    pairs = [(i, matched[i].item(), f"r = {corr[i]:.2f}") for i in order]
    return _pairs_figure(pairs, draw, names, f"{layer}: OIPs of matched maps, most alike first "
                                             "(r: activation correlation of the pair)")


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


def matched_correlation_figure(per_layer: dict[str, torch.Tensor], baselines: dict[str, dict[str, torch.Tensor]],
                               density: bool = False) -> Figure:
    """Return a histogram per conv layer of the live maps' matched correlations, with the untrained baseline's in grey.

    The title's mean and share are the numbers compare prints and writes (over live maps, r >= PARTNER_R).
    density shows shares instead of counts, for a study whose baseline has far fewer pairs than its runs.
    """
    fig, axes = plt.subplots(1, len(per_layer), figsize=(3.4 * len(per_layer), 3.3), squeeze=False)
    bins = torch.linspace(-0.2, 1.0, 25).numpy()
    for ax, (layer, corr) in zip(axes[0], per_layer.items()):
        untrained = baselines.get("untrained", {}).get(layer)
        if untrained is not None:
            ax.hist(untrained.numpy(), bins=bins, color="0.75", label="vs untrained", density=density)
        ax.hist(corr.numpy(), bins=bins, color="tab:blue", alpha=0.8, label="run vs run", density=density)
        ax.axvline(PARTNER_R, color="k", lw=0.6, ls="--", label=f"partner: r ≥ {PARTNER_R}")
        share = (corr >= PARTNER_R).float().mean()
        ax.set_title(f"{layer}\nmean r {corr.mean():.2f}, {share:.0%} with a partner", fontsize=9)
        ax.set(xlabel="matched correlation (live maps)", ylabel="density" if density else "maps",
               xticks=[0, 0.25, 0.5, 0.75, 1])  # none at -0.25, where it met the y axis's 0
    # One legend for every panel, below them: a legend in each covered its bars.
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def partners_figure(partners: dict[str, list[int]], others: int, reference: str) -> Figure:
    """Return, per conv layer, in how many of the other runs each live map of the reference run has a partner.

    Maps are sorted by that count, so the universal ones (a partner in every other run) stand at the left.
    """
    fig, axes = plt.subplots(1, len(partners), figsize=(3.4 * len(partners), 2.8), squeeze=False)
    for ax, (layer, counts) in zip(axes[0], partners.items()):
        ordered = sorted(counts, reverse=True)
        universal = sum(c == others for c in counts)
        ax.bar(range(len(ordered)), ordered, width=1.0, color=["tab:green" if c == others else "tab:blue" for c in ordered])
        ax.set(title=f"{layer}: {universal} of {len(counts)} maps in all {others}",
               xlabel=f"live maps of {reference}, sorted", ylabel=f"runs with a partner (r ≥ {PARTNER_R})",
               ylim=(0, others + 0.5))
    fig.tight_layout()
    return fig


def cka_spread_figure(layers: list[str], mean: list[float], std: list[float], untrained: list[float],
                      runs: int) -> Figure:
    """Return CKA of each layer between runs (mean and spread over all pairs) beside the untrained baseline."""
    fig, ax = plt.subplots(figsize=(0.8 * len(layers) + 2.4, 2.8))
    positions = range(len(layers))
    ax.errorbar(positions, mean, yerr=std, fmt="o", color="tab:blue", capsize=3,
                label=f"run vs run ({runs * (runs - 1) // 2} pairs, mean ± sd)")
    ax.plot(positions, untrained, "s", color="0.6", label="run vs untrained (mean)")
    ax.set_xticks(list(positions), layers, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="minibatch CKA, same layer", title=f"CKA across {runs} runs")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
