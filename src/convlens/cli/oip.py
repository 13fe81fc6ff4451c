"""convlens oip: the input that drives each map (or class logit) hardest, by gradient ascent from noise."""

from __future__ import annotations

from rich.table import Table

from ..errors import UserError
from ..oip.options import IMAGES, OBJECTIVES, Ascent
from .flags import add_dataclass_flags, console, given, parse_indices, parse_names, print_written
from .inspect import command


def add(sub) -> None:
    o = command(sub, "oip", "OIPs: the input that drives each map (or class logit) hardest, by gradient ascent from noise",
                run_oip)
    o.add_argument("--layer", action="append", help="conv layer (repeatable; default: every conv layer)")
    o.add_argument("--maps", help="maps to search, e.g. 0-127 or 0-7,12 (default: all)")
    o.add_argument("--logits", action="store_true", help="class OIPs: the input that maximises each class logit")
    o.add_argument("--classes", help="with --logits: classes to search, e.g. 4,9 (default: all)")
    o.add_argument("--objective", default="mean", choices=list(OBJECTIVES),
                   help="what to maximise over a map: its mean, its centre unit or its peak (default mean)")
    o.add_argument("--starts", type=int, default=1, help="OIPs per map from different noise starts, with their similarity")
    o.add_argument("--manifold", type=float, default=0.0,
                   help="with --logits: pull each OIP towards its class's mean test image with this weight")
    add_dataclass_flags(o.add_argument_group("ascent options"), Ascent, "ascent.", choices={"image": IMAGES})


def run_oip(args) -> None:
    from ..jobs.oip import class_oip, layer_oip

    ascent = Ascent(**given(args, Ascent, "ascent."))
    if args.starts < 1 or ascent.steps < 1:
        raise UserError("--starts and --steps must be at least 1")
    if args.logits:
        if args.layer or args.maps:
            raise UserError("--logits searches class OIPs; give --classes, not --layer or --maps")
        result = class_oip(args.run, parse_names(args.classes), args.starts, args.manifold, ascent, out=args.out)
    else:
        if args.classes:
            raise UserError("--classes goes with --logits")
        maps = parse_indices(args.maps, "--maps") if args.maps else None
        result = layer_oip(args.run, args.layer, maps, args.objective, args.starts, ascent, out=args.out,
                           log=console.print)
    table = Table(title="OIPs: how many beat the best of the test images")
    for col in ("layer", "maps", "seconds", "ratio >= 1", "fired from start", "never fired"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer, s in result.data.items():
        table.add_row(layer, str(s["maps"]), f"{s['seconds']:.2f}", f"{s['share_beating_test']:.1%}",
                      *(("-", "-") if layer == "logits" else (str(s["fired_from_start"]), str(len(s["never_fired"])))))
    console.print(table)
    for layer, s in result.data.items():
        for dead in s["never_fired"]:
            console.print(f"[yellow]{layer} map {dead['map']} never fired[/]: {dead['reason']}")
    print_written(result.files)
