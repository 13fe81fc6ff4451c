"""The convlens command line: one module per command group; each parses strings into a job's typed arguments.

    data.py     data fetch, data info, summary
    imports.py  import (a model trained elsewhere becomes a run folder)
    train.py    train (one run, seeds and grids, DDP), eval, curves, bench
    inspect.py  maps, kernels, patterns, top, probe, filters-demo
    oip.py      oip
    explain.py  explain, errors
    compare.py  compare
    serve.py    report, serve
"""

from __future__ import annotations

import importlib
import sys

from ..errors import UserError
from .flags import Parser

GROUPS = ("data", "train", "imports", "inspect", "oip", "explain", "compare", "serve")  # modules of this package
# One command line per command, shown at the end of its --help: the quickest way to learn it.
EXAMPLES = {
    "data": "convlens data fetch all",
    "summary": "convlens summary --model simple",
    "train": "convlens train --model simple --epochs 2 --out runs/simple-mnist",
    "eval": "convlens eval runs/simple-mnist --dataset fashion-mnist",
    "curves": "convlens curves runs/simple-mnist-s0 runs/simple-mnist-s1",
    "bench": "convlens bench train --recipes fast --seeds 2",
    "import": "convlens import articles.keras --dataset mnist --out runs/articles-keras",
    "maps": "convlens maps runs/simple-mnist --images 4:3,9:1 --layer conv3",
    "kernels": "convlens kernels runs/simple-mnist --layer conv1",
    "patterns": "convlens patterns runs/simple-mnist --classes 4,9",
    "top": "convlens top runs/simple-mnist --layer conv2 --k 9",
    "probe": "convlens probe runs/simple-mnist --train-size 5000",
    "filters-demo": "convlens filters-demo runs/simple-mnist --image 0",
    "oip": "convlens oip runs/simple-mnist --layer conv1 --starts 4",
    "explain": "convlens explain runs/simple-mnist --index 0 --methods gradcam,ig",
    "errors": "convlens errors runs/simple-mnist",
    "compare": "convlens compare runs/simple-mnist-s0 runs/simple-mnist-s1 --oips conv1",
    "report": "convlens report runs/simple-mnist",
    "serve": "convlens serve runs/simple-mnist --port 8000",
}


def build_parser() -> Parser:
    p = Parser(prog="convlens", description="Train small CNNs on MNIST-like data fast, then look inside them.")
    p.example = "convlens train --model simple --out runs/simple-mnist && convlens serve runs/simple-mnist"
    p.add_argument("--version", action="version", version=f"convlens {version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        importlib.import_module(f".{group}", __name__).add(sub)
    for name, command in sub.choices.items():
        command.example = EXAMPLES[name]
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("convlens")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:  # answered before the commands' modules (and torch) load
        print(f"convlens {version()}")
        return
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own parser names them, with its flags to suggest from
        parser._subparsers._group_actions[0].choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv  # --nproc hands the same command line to torchrun
    try:
        args.handler(args)
    except UserError as e:
        print(f"convlens {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
