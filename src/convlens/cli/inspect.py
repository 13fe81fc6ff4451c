"""convlens maps / kernels / patterns / top / probe / filters-demo: what a trained model computes."""

from __future__ import annotations

from rich.table import Table

from ..draw import CMAPS, SCALES
from ..errors import UserError
from .flags import console, parse_indices, parse_names, print_written



def command(sub, name: str, help_text: str, handler):
    """Add an inspection command: a run folder, --out, and the handler that runs it."""
    c = sub.add_parser(name, help=help_text, description=help_text)
    c.add_argument("run", help="run folder")
    c.add_argument("--out", help="output folder (default: a sub-folder of the run)")
    c.set_defaults(handler=handler)
    return c


def add(sub) -> None:
    m = command(sub, "maps", "every feature map of every layer for chosen test images, side by side", run_maps)
    m.add_argument("--images", help="CLASS:COUNT list, e.g. 4:3,9:1 = the first three 4s and the first 9 (default 4:1)")
    m.add_argument("--index", help="test-set indices instead, e.g. 0,17,42")
    m.add_argument("--layer", action="append", help="limit to this layer (repeatable; default: all map layers)")
    m.add_argument("--cmap", default="gray", choices=CMAPS, help="colour map (jet as in the articles)")
    m.add_argument("--scale", default="layer", choices=SCALES,
                   help="layer: one colour range per layer, strengths compare; map: each map stretched alone "
                        "(with --maps or --top-differing: one range per map across the images)")
    m.add_argument("--maps", help="only these maps of one layer, one row per map and one column per image, "
                                  "e.g. 74,52,3")
    m.add_argument("--top-differing", metavar="A,B", help="the maps of one layer whose activity differs most "
                   "between classes A and B on the test set, with the A-minus-B difference (default images: "
                   "three of each)")
    m.add_argument("--count", type=int, default=8, help="how many maps --top-differing shows")
    k = command(sub, "kernels", "a conv layer's learned kernels as images (deeper layers: norms and strongest slices)",
                run_kernels)
    k.add_argument("--layer", help="conv layer (default: the first)")
    pt = command(sub, "patterns", "class patterns: mean map activity per class, never-firing maps, maps separating "
                 "two classes", run_patterns)
    pt.add_argument("--layer", help="layer (default: the last conv layer)")
    pt.add_argument("--classes", help="two classes to compare, e.g. 4,9")
    t = command(sub, "top", "for every map, the k test images that drive it hardest, cropped to the receptive field",
                run_top)
    t.add_argument("--layer", help="layer (default: the first conv layer)")
    t.add_argument("--k", type=int, default=9, help="images per map (default 9)")
    t.add_argument("--maps", help="only these maps, e.g. 74,52 or 0-7 (default: every map, 8 a page; "
                                  "top_LAYER_overview.png shows them all at once)")
    pr = command(sub, "probe", "how well the class can be read off each layer: linear probe and nearest centroid",
                 run_probe)
    pr.add_argument("--layer", action="append", help="probe this layer (repeatable; default: every layer)")
    pr.add_argument("--train-size", type=int, default=10000,
                    help="training images the probes are fitted on (default 10000)")
    f = command(sub, "filters-demo", "classic hand-set kernels (Sobel, blur, ...) beside the learned conv1 kernels "
                "on one image", run_filters)
    f.add_argument("--image", type=int, default=0, help="test-set index (default 0)")


def run_maps(args) -> None:
    from ..jobs.maps import maps, maps_across
    from ..runs import Run

    if args.images and args.index:
        raise UserError("give --images or --index, not both")
    if args.maps and args.top_differing:
        raise UserError("give --maps or --top-differing, not both")
    pair = parse_names(args.top_differing)
    if pair is not None and len(pair) != 2:
        raise UserError(f"--top-differing takes two classes, e.g. 4,9 (got '{args.top_differing}')")
    run = Run(args.run)
    if args.index:
        images = parse_indices(args.index, "--index")
    else:
        default = f"{pair[0]}:3,{pair[1]}:3" if pair else "4:1"
        images = run.first_of_classes(args.images or default, "--images")
    if not (args.maps or pair):
        print_written(maps(run, images, args.layer, args.cmap, args.scale, out=args.out).files)
        return
    if args.layer and len(args.layer) > 1:
        raise UserError("--maps and --top-differing show maps of one layer; give one --layer")
    chosen = parse_indices(args.maps, "--maps") if args.maps else None
    print_written(maps_across(run, images, args.layer[0] if args.layer else None, chosen, tuple(pair) if pair else None,
                              args.count, args.cmap, args.scale, out=args.out).files)


def run_kernels(args) -> None:
    from ..jobs.kernels import kernels

    print_written(kernels(args.run, args.layer, out=args.out).files)


def run_patterns(args) -> None:
    from ..jobs.patterns import patterns

    pair = parse_names(args.classes)
    if pair is not None and len(pair) != 2:
        raise UserError(f"--classes takes two different classes, e.g. 4,9 (got '{args.classes}')")
    print_written(patterns(args.run, args.layer, tuple(pair) if pair else None, out=args.out).files)


def run_top(args) -> None:
    from ..jobs.top import top

    maps = parse_indices(args.maps, "--maps") if args.maps else None
    print_written(top(args.run, args.layer, args.k, maps, out=args.out).files)


def run_probe(args) -> None:
    from ..jobs.probe import probe

    result = probe(args.run, args.layer, args.train_size, out=args.out, log=console.print)
    table = Table(title="probe accuracy on the test set")
    for col in ("layer", "features", "linear probe", "nearest centroid"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for name, r in result.data["layers"].items():
        table.add_row(name, f"{r['features']:,}", f"{r['linear']:.4f}", f"{r['centroid']:.4f}")
    console.print(table)
    print_written(result.files)


def run_filters(args) -> None:
    from ..jobs.filters import filters_demo

    print_written(filters_demo(args.run, args.image, out=args.out).files)
