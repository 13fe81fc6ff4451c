"""report.html: one self-contained page (images inlined as data: URLs, no scripts, no network).

A report is a list of Sections; each holds text, tables and figures, in order. Every string is
escaped here, so file and layer names can never inject markup.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from .figures import plt


@dataclass
class Section:
    title: str
    anchor: str
    intro: str = ""
    parts: list[str] = field(default_factory=list)  # rendered HTML fragments, in order
    folded: bool = False  # shown closed (a click, or a link to it, opens it): keeps a long report short

    def text(self, words: str) -> Section:
        self.parts.append(f"<p>{html.escape(words)}</p>")
        return self

    def table(self, header: list[str], rows: list[list], numeric_from: int = 1) -> Section:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(
            f"<td{' class=num' if k >= numeric_from else ''}>{html.escape(str(v))}</td>" for k, v in enumerate(row))
            + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def pairs(self, items: list[tuple[str, object]]) -> Section:
        """Add name-value pairs laid out in columns."""
        rows = "".join(f"<div><dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd></div>" for k, v in items)
        self.parts.append(f"<dl class=pairs>{rows}</dl>")
        return self

    def figure(self, image: Figure | bytes, caption: str, wide: bool = False) -> Section:
        """Add a matplotlib Figure (drawn and closed here) or PNG bytes, with a caption."""
        if isinstance(image, Figure):
            buffer = io.BytesIO()
            image.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            plt.close(image)
            image = buffer.getvalue()
        data = base64.b64encode(image).decode("ascii")
        # A click enlarges the figure to its full size (a checkbox toggles it, in CSS: the page has no scripts).
        self.parts.append(f"<figure{' class=wide' if wide else ''}><label class=zoom><input type=checkbox>"
                          f"<img loading=lazy alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{data}\">"
                          f"</label><figcaption>{html.escape(caption)}</figcaption></figure>")
        return self


STYLE = """
:root { --ink:#1d2330; --muted:#667085; --line:#e3e6eb; --accent:#2f6fed; --bg:#f6f7f9; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif; color:var(--ink); background:var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:1.2rem 2rem; }
header h1 { margin:0; font-size:1.5rem; } header p { margin:.2rem 0 0; color:var(--muted); }
nav { position:sticky; top:0; background:#fffd; backdrop-filter:blur(4px); border-bottom:1px solid var(--line);
      padding:.5rem 2rem; display:flex; flex-wrap:wrap; gap:.3rem 1rem; font-size:.9rem; z-index:1; }
nav a { color:var(--accent); text-decoration:none; }
main { max-width:1280px; margin:0 auto; padding:1rem 2rem 3rem; }
section, details { display:block; background:#fff; border:1px solid var(--line); border-radius:10px;
                   padding:1rem 1.4rem; margin:1rem 0; }
h2 { margin:.2rem 0 .6rem; font-size:1.2rem; }
summary { cursor:pointer; } summary h2 { display:inline; }
details:not([open]) summary::after { content:" (click to open)"; color:var(--muted); font-size:.85rem; }
.intro { color:var(--muted); margin-top:0; }
.cards { display:flex; flex-wrap:wrap; gap:.8rem; }
.card { border:1px solid var(--line); border-radius:8px; padding:.5rem .9rem; min-width:9rem; }
.card b { display:block; font-size:1.35rem; } .card span { color:var(--muted); font-size:.85rem; }
table { border-collapse:collapse; margin:.6rem 0; font-size:.88rem; }
th, td { padding:.25rem .7rem; border-bottom:1px solid var(--line); text-align:left; }
th { background:#f2f4f7; } td.num { text-align:right; font-variant-numeric:tabular-nums; }
figure { display:inline-block; margin:.6rem 1rem .6rem 0; vertical-align:top; max-width:100%; }
figure.wide { display:block; }
figure img { max-width:100%; border:1px solid var(--line); border-radius:6px; cursor:zoom-in; }
label.zoom input { display:none; }
label.zoom:has(input:checked) { position:fixed; inset:0; z-index:2; overflow:auto; padding:1rem;
                                background:#000b; cursor:zoom-out; }
label.zoom:has(input:checked) img { max-width:none; background:#fff; cursor:zoom-out; }
figcaption { color:var(--muted); font-size:.85rem; margin-top:.25rem; }
dl.pairs { columns:3 16rem; font-size:.88rem; margin:.4rem 0; }
dl.pairs div { display:flex; justify-content:space-between; gap:1rem; border-bottom:1px solid var(--line);
               padding:.2rem 0; break-inside:avoid; }
dl.pairs dt { color:var(--muted); } dl.pairs dd { margin:0; font-variant-numeric:tabular-nums; }
footer { color:var(--muted); text-align:center; font-size:.8rem; padding:1rem; }
"""


def render(title: str, subtitle: str, cards: list[tuple[str, str]], sections: list[Section]) -> str:
    """Return the whole report page."""
    nav = "".join(f"<a href=\"#{html.escape(s.anchor)}\">{html.escape(s.title)}</a>" for s in sections)
    card_html = "".join(f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>" for k, v in cards)
    body = "".join(
        f"<details id=\"{html.escape(s.anchor)}\"{'' if s.folded else ' open'}><summary><h2>{html.escape(s.title)}</h2>"
        "</summary>" + (f"<p class=intro>{html.escape(s.intro)}</p>" if s.intro else "") + "".join(s.parts) + "</details>"
        for s in sections)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content=\"width=device-width, initial-scale=1\">"
            f"<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><nav>{nav}</nav>"
            f"<main><section id=overview><div class=cards>{card_html}</div></section>{body}</main>"
            f"<footer>written by convlens report; works offline, no scripts; click a figure to see it at full size"
            f"</footer></body></html>\n")
