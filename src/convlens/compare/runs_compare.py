"""Compare two models on the same images: matched maps per conv layer, CKA between all layers, agreement."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from ..inspection.filters import conv_weight
from ..inspection.maps import feature_maps
from ..layers import LayerTable, layer_table
from ..progress import track
from ..training import predict
from .similarity import gram, kernel_similarity, linear_cka, map_correlation, match

# A map "has a partner" in the other run when its matched map correlates at least this much. The
# one threshold of every compare figure, table, JSON key and the README; means are over live maps.
PARTNER_R = 0.8

@dataclass
class LayerMatch:
    layer: str  # the layer's name in A
    layer_b: str  # the layer at the same position in B: the same name for runs of one architecture
    correlation: torch.Tensor  # (Ca, Cb) Pearson correlation of every map pair
    matched: torch.Tensor  # (Ca,) the map of B matched to each map of A
    matched_correlation: torch.Tensor  # (Ca,)
    kernel_matched: torch.Tensor | None = None  # first layer only: matching by signed kernel cosine
    kernel_cosine: torch.Tensor | None = None  # (Ca,) cosine of each kernel-matched pair
    silent_a: list[int] = field(default_factory=list)  # maps constant over every image and position
    silent_b: list[int] = field(default_factory=list)

    @property
    def live(self) -> torch.Tensor:
        """(Ca,) whether a matched pair has both maps live (a silent map correlates with nothing)."""
        live = torch.ones(len(self.matched), dtype=torch.bool)
        live[torch.tensor(self.silent_a, dtype=torch.long)] = False
        silent_b = torch.zeros(self.correlation.shape[1], dtype=torch.bool)
        silent_b[torch.tensor(self.silent_b, dtype=torch.long)] = True
        return live & ~silent_b[self.matched]

    @property
    def live_correlation(self) -> torch.Tensor:
        """The matched correlations of the live pairs: what every mean and share is taken over."""
        return self.matched_correlation[self.live]

    def summary(self) -> dict:
        """Matched-correlation figures over the maps live in both runs; silent maps are counted apart."""
        live, c, index = self.live, self.live_correlation, torch.arange(len(self.matched))
        out = {"maps": len(self.matched), "live_pairs": len(c), "mean_matched_correlation": c.mean().item(),
               "partner_threshold": PARTNER_R, "share_with_partner": (c >= PARTNER_R).float().mean().item(),
               "same_order": bool(torch.equal(self.matched[live], index[live])),
               "maps_in_place": int((self.matched == index)[live].sum()),
               "matched": self.matched.tolist(), "silent_maps_a": self.silent_a, "silent_maps_b": self.silent_b}
        if self.kernel_matched is not None:
            out |= {"kernel_mean_cosine": self.kernel_cosine.mean().item(),
                    "kernel_matched": self.kernel_matched.tolist(),
                    "kernel_and_map_matching_agree": (self.kernel_matched == self.matched).float().mean().item()}
        return out


@dataclass
class Comparison:
    layers: list[LayerMatch]
    cka_layers: list[str]
    cka: torch.Tensor  # (La, Lb) linear CKA between every layer of A and of B
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"layers": {m.layer: m.summary() for m in self.layers},
                "cka": {"layers": self.cka_layers, "matrix": self.cka.tolist()}, **self.extra}


# The layers compared, matched by position: a Keras training of the articles' net pairs with a convlens
# training of `simple` although every name differs. Flatten, dropout and the like only copy their input.
REPRESENTATION_KINDS = ("conv", "pool", "dense", "logits")


def representation_layers(table: LayerTable) -> list[str]:
    """Return the layers CKA compares, in forward order."""
    return table.names(*REPRESENTATION_KINDS)


def paired_layers(a: LayerTable, b: LayerTable) -> list[tuple[str, str]]:
    """Return (name in A, name in B) of the compared layers, by position; a UserError if kinds or shapes differ."""
    layout = lambda t: [(t[n].kind, t[n].output_shape) for n in representation_layers(t)]  # noqa: E731
    if layout(a) != layout(b):
        raise UserError("the models have different architectures: compare needs layers of the same kinds and "
                        f"shapes in the same order ({', '.join(representation_layers(a))} against "
                        f"{', '.join(representation_layers(b))})")
    return list(zip(representation_layers(a), representation_layers(b)))


@torch.no_grad()
def compare_models(a: nn.Module, b: nn.Module, images: torch.Tensor) -> Comparison:
    """Return every similarity measure between two models of the same architecture on images (N, C, H, W)."""
    table = layer_table(a, tuple(images.shape[1:]))
    pairs = paired_layers(table, layer_table(b, tuple(images.shape[1:])))
    layers, to_b = [n for n, _ in pairs], dict(pairs)
    maps_a = feature_maps(a, images, layers)
    if b is a:  # the self baseline needs one pass
        maps_b = maps_a
    else:
        found = feature_maps(b, images, list(to_b.values()))
        maps_b = {name_a: found[name_b] for name_a, name_b in pairs}  # keyed by A's names from here on
    matches = []
    for i, layer in enumerate(track(table.convs, "matching maps, layer by layer")):
        corr = map_correlation(maps_a[layer], maps_b[layer])
        matched = match(corr)
        m = LayerMatch(layer, to_b[layer], corr, matched, corr[torch.arange(len(matched)), matched],
                       silent_a=_silent(maps_a[layer]), silent_b=_silent(maps_b[layer]))
        wa, _ = conv_weight(a, layer)
        if i == 0 and wa.shape[1] == 1:  # kernels on the raw image can be compared as pictures
            cos = kernel_similarity(wa, conv_weight(b, to_b[layer])[0])
            m.kernel_matched = match(cos)
            m.kernel_cosine = cos[torch.arange(len(matched)), m.kernel_matched]
        matches.append(m)
    grams_a = [gram(maps_a[n]) for n in layers]
    grams_b = grams_a if b is a else [gram(maps_b[n]) for n in layers]
    return Comparison(matches, layers, linear_cka(grams_a, grams_b))


def _silent(maps: torch.Tensor) -> list[int]:
    flat = maps.transpose(0, 1).flatten(1)
    return torch.nonzero(flat.amax(1) == flat.amin(1)).flatten().tolist()


def agreement(a: nn.Module, b: nn.Module, images_u8: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the share of images both models classify alike, the indices where they differ, and both predictions."""
    pa = predict(a, images_u8).argmax(1)
    pb = pa if b is a else predict(b, images_u8).argmax(1)
    differ = torch.nonzero(pa != pb).flatten()
    return (pa == pb).float().mean().item(), differ, pa, pb
