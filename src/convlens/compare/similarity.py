"""Similarity measures between the representations of two networks; tensors in, tensors out."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def map_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the Pearson correlation (Ca, Cb) between every map of a (N, Ca, H, W) and every map of b.

    Each map is one variable observed at every image and position, so two maps correlate when they
    light up on the same strokes of the same digits. A map constant over all inputs correlates 0.
    Maps are read as (N*H*W, C) rows, a free view of channels_last tensors, so one GEMM gives every
    pair (conv1 on 2,000 images: 0.1 s instead of 4.7 s through per-map copies).
    """
    x, y = (_columns(t) for t in (a, b))
    cross = (x.T @ y).double()  # (Ca, Cb), centred already
    norms = x.pow(2).sum(0).double().sqrt()[:, None] * y.pow(2).sum(0).double().sqrt()[None, :]
    return (cross / norms.clamp(min=1e-12)).float()


def _columns(maps: torch.Tensor) -> torch.Tensor:
    cols = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).float()
    return cols - cols.mean(0, keepdim=True)


def kernel_similarity(wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Return the cosine similarity (Ca, Cb) between the kernels of two conv weights (C, I, k, k).

    Signed on purpose: a kernel and its negative detect opposite edges, so they are different filters
    and score -1, not 1.
    """
    x = wa.flatten(1).double()
    y = wb.flatten(1).double()
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    y = y / y.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return (x @ y.T).float()


def match(similarity: torch.Tensor) -> torch.Tensor:
    """Return, for each row i, the column matched to it one to one so the summed similarity is largest (Hungarian).

    Exact ties (maps that never vary score 0 with everything) go to the same index, so a network
    compared with itself keeps its order.
    """
    score = similarity.double()
    n = min(score.shape)
    score[range(n), range(n)] += 1e-9
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    matched = torch.empty(similarity.shape[0], dtype=torch.long)
    matched[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return matched


def gram(features: torch.Tensor) -> torch.Tensor:
    """Return the centred Gram matrix Xc Xc^T (N, N) of features (N, ...), in double.

    Cheaper than the feature-space form once a layer has more features than images (conv1: 21,632
    against 2,000).
    """
    x = features.flatten(1).float()
    return symmetric_product(x - x.mean(0, keepdim=True), blocks=4)


def symmetric_product(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """Return X X^T (N, N) in double, multiplying only the row blocks on and above the diagonal and mirroring the rest.

    4 blocks (10 of 16 products) took a 2,000-image conv1 Gram from 1.8 s to 1.2 s; at a batch of
    256, 2 blocks (3 of 4) took 12.8 ms to 10.6 ms, where 3 blocks took 16.5 ms and 4 took 12.2 ms.
    """
    out = torch.empty(len(x), len(x), dtype=torch.float64)
    edges = torch.linspace(0, len(x), blocks + 1).long().tolist()
    for i in range(blocks):
        rows = slice(edges[i], edges[i + 1])
        for j in range(i, blocks):
            cols = slice(edges[j], edges[j + 1])
            block = (x[rows] @ x[cols].T).double()
            out[rows, cols] = block
            out[cols, rows] = block.T
    return out


def linear_cka(grams_a: list[torch.Tensor], grams_b: list[torch.Tensor]) -> torch.Tensor:
    """Return linear CKA (Kornblith et al. 2019) between every layer of A and of B from their centred Gram matrices.

    CKA = <Ka, Kb> / (|Ka| |Kb|) with K = Xc Xc^T: 1 for representations equal up to rotation and
    scale, near 0 for unrelated ones. Invariant to permuting maps, so it needs no matching.
    """
    out = torch.zeros(len(grams_a), len(grams_b))
    norms_b = [g.norm() for g in grams_b]
    for i, ga in enumerate(grams_a):
        na = ga.norm()
        for j, gb in enumerate(grams_b):
            out[i, j] = ((ga * gb).sum() / (na * norms_b[j]).clamp(min=1e-12)).float()
    return out



def batch_starts(images: int, batch: int) -> list[int]:
    """Return where each batch starts; a last batch of fewer than 4 images is left out (the estimator needs 4)."""
    return [s for s in range(0, images, batch) if images - s >= 4]


def zero_diagonal_gram(maps: torch.Tensor) -> torch.Tensor:
    """Return X X^T (N, N) of maps (N, ...) with a zero diagonal, in double: the input of the unbiased HSIC.

    The Gram matrix does not depend on the order of features: channels_last maps are read as the free
    (N, H*W*C) view instead of being copied into (N, C*H*W).
    """
    x = (maps.permute(0, 2, 3, 1) if maps.dim() == 4 else maps).reshape(len(maps), -1).float()
    return symmetric_product(x, blocks=2).fill_diagonal_(0.0)


def unbiased_hsic(ka: torch.Tensor, kb: torch.Tensor) -> torch.Tensor:
    """Return HSIC_1 (Song et al. 2012) (La, Lb) of every pair of zero-diagonal Gram matrices (La, n, n), (Lb, n, n)."""
    n = ka.shape[-1]
    trace = ka.flatten(1) @ kb.flatten(1).T  # trace(K L) = sum(K * L): K and L are symmetric
    row_a, row_b = ka.sum(-1), kb.sum(-1)  # (L, n): K 1
    total_a, total_b = row_a.sum(-1), row_b.sum(-1)  # 1' K 1
    middle = total_a[:, None] * total_b[None, :] / ((n - 1) * (n - 2))
    cross = row_a @ row_b.T * 2 / (n - 2)  # 1' K L 1 = (K 1) . (L 1)
    return (trace + middle - cross) / (n * (n - 3))
