"""OIPs of a big colour model against Lucent 0.1.8 (issue 29): the same model, map and step count.

usage: python bench/oip_lucent.py [--side 128] [--maps 4] [--steps 256] [--layer layer3_0_conv2]

Lucent is not a convlens dependency (it requires torchvision, which has no CPU build here, and kornia
0.4.1); install it beside convlens without its requirements to run this comparison:
    .venv/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator
torchvision is used by Lucent only for ImageNet normalisation, which convlens's imported graph does
itself (preprocess=False below), so a stand-in module satisfies its import.

The model is torchvision's ResNet-18 as tests/importers/nets.py writes it (10 classes, batch-norm
statistics away from their defaults), imported with convlens. Each map is searched three ways:
  lucent     render_vis: Fourier + decorrelated colour, standard transforms, Adam 0.05, one map a call
  spectral   convlens's spectral image (the same parameterisation and transforms), all maps in one batch
  pixels     convlens's pixel ascent from multi-scale noise, all maps in one batch
and each result is read the same way: the map's mean activation on the final image, untransformed.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from convlens.importers import import_module
from convlens.inspection.maps import feature_maps
from convlens.oip.ascent import Ascent
from convlens.oip.search import layer_oips
from convlens.speed import cpu_description

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "importers"))  # the nets live with the tests
from nets import resnet18, with_trained_statistics  # noqa: E402


def lucent():
    """Lucent's render module, with a stand-in for the torchvision import it makes for normalisation only."""
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Normalize = None
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision")).transforms = transforms
    sys.modules.setdefault("torchvision.transforms", transforms)
    from lucent.optvis import param, render

    return render, param


def reached(model, layer: str, maps: list[int], images: torch.Tensor) -> np.ndarray:
    """Each map's mean activation on its own image (images[k] is map k's)."""
    with torch.no_grad():
        out = feature_maps(model, images, [layer])[layer]
    return np.array([out[k, m].mean().item() for k, m in enumerate(maps)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--maps", type=int, default=4)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--layer", default="layer3_0_conv2")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = import_module(with_trained_statistics(resnet18(10)), (3, args.side, args.side)).model
    maps = list(range(args.maps))
    print(f"ResNet-18 at {args.side}x{args.side}, {args.layer} maps 0-{args.maps - 1}, {args.steps} steps; "
          f"{cpu_description()}")
    rows = {}
    for style in ("spectral", "pixels"):
        t = time.perf_counter()
        oips = layer_oips(model, args.layer, maps, ascent=Ascent(steps=args.steps, image=style))
        rows[style] = (reached(model, args.layer, maps, oips.best), time.perf_counter() - t)
    try:
        render, param = lucent()
    except ImportError as e:
        print(f"lucent is not installed ({e}); see this script's docstring")
    else:
        images, t = [], time.perf_counter()
        for m in maps:
            np.random.seed(m)
            torch.manual_seed(m)
            image = lambda: param.image(args.side, fft=True, decorrelate=True)  # noqa: E731
            out = render.render_vis(model, f"{args.layer}:{m}", image,
                                    thresholds=(args.steps,), preprocess=False, progress=False, show_image=False,
                                    fixed_image_size=args.side)
            images.append(torch.from_numpy(out[-1][0]).permute(2, 0, 1))
        rows["lucent"] = (reached(model, args.layer, maps, torch.stack(images)), time.perf_counter() - t)
    base = rows.get("lucent", rows["spectral"])
    print(f"{'method':10} {'mean activation':>16} {'per map':>30} {'CPU s':>8} {'vs lucent':>10}")
    for name, (values, seconds) in rows.items():
        print(f"{name:10} {values.mean():16.3f} {np.array2string(values, precision=2):>30} {seconds:8.1f} "
              f"{base[1] / seconds:9.2f}x")


if __name__ == "__main__":
    main()
