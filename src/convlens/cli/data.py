"""convlens data fetch / data info / summary: the data sets, and a model's layers before any training."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from rich.table import Table

from ..errors import UserError
from .flags import Parser, console


def add(sub) -> None:
    data = sub.add_parser("data", help="fetch data sets and describe them")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    fetch = data_sub.add_parser("fetch", help="install data sets into $CONVLENS_DATA (default ~/.cache/convlens)")
    fetch.add_argument("name", choices=["mnist", "fashion-mnist", "all"])
    fetch.set_defaults(handler=fetch_data)
    info = data_sub.add_parser("info", help="counts, shape, class balance and class names of a data set")
    info.add_argument("dataset", help="mnist, fashion-mnist or idx:DIR")
    info.set_defaults(handler=data_info)

    from ..config import PRESETS

    summary = sub.add_parser("summary", help="layers, output shapes, parameters and receptive fields of a model",
                             description="The layers of a run's model (trained or imported), or of a preset or "
                             "layer spec before training. Example: convlens summary runs/articles-keras")
    summary.add_argument("run", nargs="?", help="a run folder (default: the model --model names)")
    summary.add_argument("--model", default="simple", help=f"a preset ({', '.join(PRESETS)}) or a layer spec")
    summary.add_argument("--layers", metavar="PATTERNS", help="only the layers whose names match these shell patterns, "
                         "comma-separated: 'conv*', 'block_1*,block_2*' (totals stay the whole model's)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--plot", metavar="PNG", help="also draw parameters and receptive fields per layer here")
    summary.add_argument("--graph", metavar="PNG", help="also draw the layer graph here: each layer with its output "
                         "shape, parameters and receptive field, arrows from the layers it reads (branches and joins)")
    summary.set_defaults(handler=show_summary)


def fetch_data(args) -> None:
    from ..fetch import fetch

    for name in ("mnist", "fashion-mnist") if args.name == "all" else (args.name,):
        fetch(name, log=console.print)


def data_info(args) -> None:
    from ..data import class_balance, load_dataset

    ds = load_dataset(args.dataset)
    c, h, w = ds.image_shape
    console.print(f"{ds.name}: train {len(ds.train_labels)}, test {len(ds.test_labels)}, images {h}x{w}"
                  f"{'' if c == 1 else f'x{c}'} uint8, {ds.num_classes} classes")
    table = Table()
    for col in ("class", "name", "train", "test"):
        table.add_column(col, justify="right" if col in ("class", "train", "test") else "left")
    train_n, test_n = class_balance(ds.train_labels, ds.num_classes), class_balance(ds.test_labels, ds.num_classes)
    for k, name in enumerate(ds.class_names):
        table.add_row(str(k), name, str(train_n[k]), str(test_n[k]))
    console.print(table)


def show_summary(args) -> None:
    from ..layers import layer_table
    from ..models import build_model, resolve_spec
    from ..runs import Run

    if args.run:
        run = Run(args.run)
        spec, table = run.config.model.model, run.layers
    else:
        spec = resolve_spec(args.model)
        table = layer_table(build_model(spec))
    rows = list(table)
    if args.layers:
        patterns = [p.strip() for p in args.layers.split(",") if p.strip()]
        rows = [r for r in rows if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
        if not rows:
            raise UserError(f"no layer matches {args.layers}; the layers are {', '.join(table.names())[:300]}")
    if args.json:
        layers = [{"name": r.name, "kind": r.kind, "type": r.type, "output_shape": list(r.output_shape),
                   "params": r.params, "receptive_field": r.field.size, "jump": r.field.jump, "offset": r.field.offset}
                  for r in rows]
        print(json.dumps({"spec": spec, "input_shape": list(table.input_shape), "layers": layers,
                          "total_params": table.total_params}, indent=2))
        return
    shown = Table(title=spec, caption="receptive field: the input square one unit sees; "
                  "jump: input pixels between neighbouring units")
    cells = [[r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.field.size}x{r.field.size}",
              str(r.field.jump) if r.field.jump else "-"] for r in rows]
    # Names and numbers whole, whatever the width (a 150-layer model's names are how its maps are asked for);
    # only the module types give way, so each layer stays one line.
    for k, col in enumerate(("layer", "type", "output shape", "params", "receptive field", "jump")):
        widest = max(len(f"{table.total_params:,}") if k == 3 else 0, *(len(row[k]) for row in cells))
        shown.add_column(col, justify="left" if k < 2 else "right", no_wrap=True,
                         **({"overflow": "ellipsis", "max_width": 32} if k == 1 else {"min_width": widest}))
    for row in cells:
        shown.add_row(*row)
    shown.add_row("total", "", "", f"{table.total_params:,}", "", "", style="bold")
    console.print(shown)
    if args.plot or args.graph:
        from ..draw import figures, graph_figure

        drawn = [(args.plot, lambda: figures.architecture(table, spec)),
                 (args.graph, lambda: graph_figure.layer_graph(table))]
        for path, draw in drawn:
            if path:
                console.print(f"wrote {figures.save(draw(), Path(path))}")

