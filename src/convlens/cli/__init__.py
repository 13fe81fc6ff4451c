"""The convlens command line: one module per command group; each parses strings into a job's typed arguments.

    data.py     data fetch, data info, summary
    imports.py  import (a model trained elsewhere becomes a run folder)
    train.py    train (one run, seeds and grids, DDP), eval, bench
    inspect.py  maps, kernels, patterns, top, probe, filters-demo
    oip.py      oip
    explain.py  explain, errors
    compare.py  compare
    serve.py    report, serve
"""

from __future__ import annotations

import sys

from ..errors import UserError
from . import compare, data, explain, imports, inspect, oip, serve, train
from .flags import Parser

GROUPS = (data, train, imports, inspect, oip, explain, compare, serve)


def build_parser() -> Parser:
    p = Parser(prog="convlens", description="Train small CNNs on MNIST-like data fast, then look inside them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # --nproc hands the same command line to torchrun
    try:
        args.handler(args)
    except UserError as e:
        print(f"convlens {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
