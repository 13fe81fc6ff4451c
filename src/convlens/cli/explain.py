"""convlens explain / errors: which pixels push towards an answer, for one image or for every mistake."""

from __future__ import annotations

from ..explain import METHODS
from .flags import console, parse_names, print_written
from .inspect import command


def add(sub) -> None:
    ex = command(sub, "explain", "why this answer: attribution maps of one test image by several methods (Captum)",
                 run_explain)
    ex.add_argument("--index", type=int, required=True, help="test-set index of the image")
    ex.add_argument("--methods", help=f"comma-separated, from {','.join(METHODS)} (default: all)")
    ex.add_argument("--target", help="also explain towards this class (number or name)")
    ex.add_argument("--layer", help="Grad-CAM layer (default: the last conv layer)")
    ex.add_argument("--patch", type=int, default=4, help="occlusion patch side in pixels (default 4)")
    ex.add_argument("--stride", type=int, default=2, help="occlusion stride in pixels (default 2)")
    ex.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    ex.add_argument("--sanity", action="store_true",
                    help="randomise the weights layer by layer from the top and measure how much each map changes")
    er = command(sub, "errors", "every misclassified test image, grouped by (true, predicted), explained towards both",
                 run_errors)
    er.add_argument("--method", default="ig", help=f"one of {','.join(METHODS)} (default ig)")
    er.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")


def run_explain(args) -> None:
    from ..jobs.explain import explain

    result = explain(args.run, args.index, parse_names(args.methods), args.target, args.layer, args.patch,
                     args.stride, args.steps, args.sanity, out=args.out, log=console.print)
    report = result.data
    console.print(f"image {args.index}: true {report['label']}, predicted {report['predicted']} "
                  f"(p = {max(report['probabilities']):.3f})")
    for method, verdict in report.get("sanity", {}).get("verdicts", {}).items():
        console.print(f"sanity {method}: {verdict}")
    print_written(result.files)


def run_errors(args) -> None:
    from ..errors import UserError
    from ..jobs.errors import errors

    if "," in args.method:
        raise UserError(f"--method takes one method, e.g. ig (got '{args.method}')")
    result = errors(args.run, args.method, args.steps, out=args.out, log=console.print)
    pairs = ", ".join(f"{p['true_name']}→{p['predicted_name']} ({p['count']})" for p in result.data["pairs"][:8])
    console.print(f"most frequent (true→predicted): {pairs}")
    print_written(result.files)
