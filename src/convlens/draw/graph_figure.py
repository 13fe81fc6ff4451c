"""The model as a graph: each layer a box with its output shape, parameters and receptive field, arrows
from the layers it reads, so branches and joins (a residual net's skip, an Inception block's concat) show.

The edges come from the layer table (`Layer.inputs`, recorded in its one forward pass), so convlens's
own nets and every imported model draw the same way. Layers sit in rows by depth (one more than the
deepest layer they read); a row's layers are ordered by where their inputs sit, and an edge that
skips rows is drawn as an arc beside the boxes it passes.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

COLOURS = {"input": "#dddddd", "conv": "#c6dbef", "pool": "#c7e9c0", "dense": "#fdd0a2", "logits": "#fdae6b",
           "flatten": "#eeeeee", "dropout": "#eeeeee", "other": "#f2f0f7"}
ROW_INCHES = 0.62  # vertical space per row: two lines of 8-point text and the arrow between rows
CHAR_INCHES = 0.068  # width of one 8-point character, for the column spacing


def graph_layout(table) -> dict[str, tuple[float, int]]:
    """Return each layer's (column, row), "input" at row 0; every layer sits below all the layers it reads."""
    rows = {"input": 0}
    for layer in table:
        rows[layer.name] = 1 + max(rows.get(i, 0) for i in layer.inputs or ("input",))
    columns = {"input": 0.0}
    by_row: dict[int, list] = {}
    for layer in table:
        by_row.setdefault(rows[layer.name], []).append(layer)
    for row in sorted(by_row):
        wanted = sorted(by_row[row], key=lambda l: sum(columns.get(i, 0.0) for i in l.inputs or ("input",))
                        / max(len(l.inputs), 1))
        centre = sum(columns.get(i, 0.0) for l in wanted for i in l.inputs or ("input",)) / max(
            sum(len(l.inputs or ("input",)) for l in wanted), 1)
        for k, layer in enumerate(wanted):  # side by side, one column apart, centred on their inputs
            columns[layer.name] = centre + k - (len(wanted) - 1) / 2
    return {name: (columns[name], rows[name]) for name in rows}


def _label(layer) -> str:
    shape = "x".join(map(str, layer.output_shape))
    field = f"rf {layer.field.size}" if layer.field.jump or layer.field.size > 1 else ""
    details = " · ".join(part for part in (shape, f"{layer.params:,} p" if layer.params else "", field) if part)
    return f"{layer.name}\n{details}"


def layer_graph(table, title: str = "") -> Figure:
    """Return the figure of a model's layer graph (see the module docstring)."""
    places = graph_layout(table)
    labels = {layer.name: _label(layer) for layer in table}
    labels["input"] = "input\n" + "x".join(map(str, table.input_shape))
    widest = max(len(line) for text in labels.values() for line in text.splitlines())
    column = max(2.2, widest * CHAR_INCHES + 0.5)  # inches between column centres: no two boxes touch
    xs = [x for x, _ in places.values()]
    height = max(y for _, y in places.values()) + 1
    fig, ax = plt.subplots(figsize=((max(xs) - min(xs) + 1) * column + 0.5, height * ROW_INCHES + 0.8))
    ax.set(xlim=(min(xs) - 0.55, max(xs) + 0.55), ylim=(height - 0.4, -0.6))
    ax.axis("off")
    kinds = {layer.name: layer.kind for layer in table} | {"input": "input"}
    for layer in table:
        x, y = places[layer.name]
        for source in layer.inputs or ("input",):
            sx, sy = places[source]
            bend = 0.0
            if y - sy > 1:  # passes rows between: an arc beside the boxes, not through them
                # an arc bulges by about rad * length / 2: past half a box where the boxes it passes are in line
                bend = (column / 2 + 0.1) * 2 / ((y - sy) * ROW_INCHES) if abs(x - sx) < 0.5 else 0.35
                bend = min(bend, 2.0) * (-1 if x >= sx else 1)
            ax.add_patch(FancyArrowPatch((sx, sy + 0.22), (x, y - 0.22), arrowstyle="-|>", mutation_scale=8,
                                         color="0.45", lw=0.8, zorder=1, connectionstyle=f"arc3,rad={bend}"))
    for name, (x, y) in places.items():
        ax.text(x, y, labels[name], ha="center", va="center", fontsize=8, zorder=2,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": COLOURS.get(kinds[name], COLOURS["other"]),
                      "edgecolor": "0.5", "lw": 0.6})
    ax.set_title(title or f"{len(table.layers)} layers, {table.total_params:,} parameters\n"
                 "rf: the input square one unit sees", fontsize=9)
    fig.tight_layout()
    return fig
