"""convlens compare: do two trainings learn the same filters?"""

from __future__ import annotations

from rich.table import Table

from .flags import console, print_written


def add(sub) -> None:
    cmp = sub.add_parser("compare", help="do two trainings learn the same filters? match maps, CKA, agreement",
                         description="Compare runs of the same architecture: maps matched one to one by activation "
                         "correlation (Hungarian), conv1 kernels by signed cosine, linear CKA between all layers, "
                         "prediction agreement; with an untrained network and the run itself as baselines.")
    cmp.add_argument("runs", nargs="*", help="two or more run folders")
    cmp.add_argument("--study", metavar="GLOB",
                     help="a seed study of every run folder the pattern names (quote it: 'runs/simple-s*'): per "
                          "layer, matched correlations over all pairs, the reference run's maps with a partner in "
                          "every other run and in none, CKA mean and spread; the first run is the reference")
    cmp.add_argument("--test-images", type=int, default=2000, help="how many test images the maps are compared on "
                     "(default 2000)")
    cmp.add_argument("--oips", metavar="LAYER", help="also draw the OIPs of matched maps of this conv layer")
    cmp.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="where a study's work runs: this process, or Ray tasks sharing out the images (default local)")
    cmp.add_argument("--address", help="the Ray cluster for --engine ray: auto or ray://HOST:10001 (default: a local "
                     "Ray instance)")
    cmp.add_argument("--out", help="output folder (default: compare-A-vs-B, or study-N-runs, beside the first run)")
    cmp.set_defaults(handler=run_compare)


def run_compare(args) -> None:
    from ..compare.runs_compare import PARTNER_R
    from ..errors import UserError
    from ..jobs.compare import compare

    if args.study:
        if args.runs or args.oips:
            raise UserError("--study takes its runs from the pattern; give run folders or --study, and no --oips")
        _run_study(args)
        return
    if len(args.runs) < 2:
        raise UserError("compare needs two or more run folders, or --study 'GLOB'")
    if args.engine != "local" or args.address:
        raise UserError("--engine and --address share out the work of a study (--study); two runs compare here")
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


def _run_study(args) -> None:
    from ..jobs.study import seed_study

    result = seed_study(args.study, args.test_images, args.out, args.engine, args.address, log=console.print)
    report = result.data
    table = Table(title=f"{len(report['runs'])} runs, reference {report['reference']}: "
                        f"maps with a partner (r >= {report['partner_threshold']})")
    for col in ("layer", "mean matched r", "share with a partner (min-max)", "universal maps", "maps with none",
                "untrained: mean r / share"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer, s in report["layers"].items():
        share, base = s["share_with_partner"], s["untrained"]
        live = len(s["partners_per_map"]) - len(s["silent_maps"])
        table.add_row(layer, f"{s['matched_correlation']['mean']:.2f}",
                      f"{share['mean']:.0%} ({share['min']:.0%}-{share['max']:.0%})",
                      f"{len(s['universal_maps'])} of {live}", f"{len(s['maps_without_partner'])} of {live}",
                      f"{base['matched_correlation']['mean']:.2f} / {base['share_with_partner']:.0%}")
    console.print(table)
    cka = report["cka"]
    console.print("CKA, same layer, mean ± sd over pairs (untrained): " + ", ".join(
        f"{n} {m:.2f} ± {s:.2f} ({u:.2f})" for n, m, s, u in zip(cka["layers"], cka["mean"], cka["std"], cka["untrained_mean"])))
    print_written(result.files)
