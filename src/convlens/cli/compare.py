"""convlens compare: do two trainings learn the same filters?"""

from __future__ import annotations

from rich.table import Table

from .flags import console, print_written


def add(sub) -> None:
    cmp = sub.add_parser("compare", help="do two trainings learn the same filters? match maps, CKA, agreement",
                         description="Compare runs of the same architecture: maps matched one to one by activation "
                         "correlation (Hungarian), conv1 kernels by signed cosine, linear CKA between all layers, "
                         "prediction agreement; with an untrained network and the run itself as baselines.")
    cmp.add_argument("runs", nargs="+", help="two or more run folders")
    cmp.add_argument("--test-images", type=int, default=2000, help="how many test images the maps are compared on "
                     "(default 2000)")
    cmp.add_argument("--oips", metavar="LAYER", help="also draw the OIPs of matched maps of this conv layer")
    cmp.add_argument("--out", help="output folder (default: compare-A-vs-B beside the first run)")
    cmp.set_defaults(handler=run_compare)


def run_compare(args) -> None:
    from ..compare.runs_compare import PARTNER_R
    from ..jobs.compare import compare

    result = compare(args.runs, args.test_images, args.out, args.oips, log=console.print)
    report = result.data
    table = Table(title=f"matched maps (live): mean correlation / share with a partner (r >= {PARTNER_R}) / same order?")
    table.add_column("pair")
    layers = list(next(iter(report["pairs"].values()))["layers"])
    for layer in layers:
        table.add_column(layer, justify="right")
    table.add_column("agreement", justify="right")
    rows = list(report["pairs"].items()) + [(f"baseline: {k}", v) for k, v in report["baselines"].items()]
    for name, pair in rows:
        cells = [f"{s['mean_matched_correlation']:.2f} / {s['share_with_partner']:.0%} / "
                 f"{'yes' if s['same_order'] else 'no'}" for s in pair["layers"].values()]
        table.add_row(name, *cells, f"{pair['prediction_agreement']:.2%}")
    console.print(table)
    print_written(result.files)
